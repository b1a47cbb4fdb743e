//! The fault proxy's control protocol: one command per line over TCP, one
//! reply line per command, so any test runner (the Node suite, a shell with
//! `nc`) can drive a `herald-fault-proxy` process.
//!
//! ```text
//! pass [TARGET]            forward everything
//! delay MS [TARGET]        forward each chunk MS milliseconds late
//! blackhole [TARGET]       forward nothing, keep the connections open
//! cut [TARGET]             reset the connections (SO_LINGER 0) on both sides
//! list                     the open connections, as a JSON array
//! upstream HOST:PORT[,HOST:PORT...]
//!                          forward later connections there (round robin)
//! ```
//!
//! TARGET is `all` (the default: the open connections and every later one),
//! `live` (the open connections only) or a connection id from `list`. For
//! `cut`, `all` and `live` both mean the open connections. Replies are
//! `ok N` (connections affected), `ok [...]` for `list`, or `err MESSAGE`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{Fault, FaultProxy};

/// Longest command line accepted.
const MAX_LINE: usize = 1024;

/// Which connections a command applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The open connections and every later one.
    All,
    /// The open connections only.
    Live,
    /// One connection.
    Id(u64),
}

/// A parsed control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Set a fault.
    Set(Fault, Target),
    /// Reset connections.
    Cut(Target),
    /// List the open connections.
    List,
    /// Forward later connections to these addresses (round robin).
    Upstream(Vec<SocketAddr>),
}

/// Why a command line was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing on the line.
    #[error("empty command")]
    Empty,
    /// The first word is no command.
    #[error("unknown command {0:?}")]
    Unknown(String),
    /// A required argument is missing or malformed.
    #[error("bad argument {0:?}")]
    BadArgument(String),
    /// Words left over.
    #[error("unexpected {0:?}")]
    Trailing(String),
}

fn target(word: Option<&str>) -> Result<Target, ParseError> {
    match word {
        None | Some("all") => Ok(Target::All),
        Some("live") => Ok(Target::Live),
        Some(w) => w
            .parse()
            .map(Target::Id)
            .map_err(|_| ParseError::BadArgument(w.to_owned())),
    }
}

impl std::str::FromStr for Command {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut words = line.split_ascii_whitespace();
        let name = words.next().ok_or(ParseError::Empty)?;
        let command = match name {
            "pass" => Command::Set(Fault::Pass, target(words.next())?),
            "blackhole" => Command::Set(Fault::Blackhole, target(words.next())?),
            "delay" => {
                let ms = words.next().ok_or(ParseError::BadArgument(String::new()))?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| ParseError::BadArgument(ms.to_owned()))?;
                Command::Set(
                    Fault::Delay(Duration::from_millis(ms)),
                    target(words.next())?,
                )
            }
            "cut" => Command::Cut(target(words.next())?),
            "list" => Command::List,
            "upstream" => {
                let a = words.next().ok_or(ParseError::BadArgument(String::new()))?;
                let addrs = a
                    .split(',')
                    .map(|one| one.parse())
                    .collect::<Result<Vec<SocketAddr>, _>>()
                    .map_err(|_| ParseError::BadArgument(a.to_owned()))?;
                Command::Upstream(addrs)
            }
            other => return Err(ParseError::Unknown(other.to_owned())),
        };
        match words.next() {
            Some(extra) => Err(ParseError::Trailing(extra.to_owned())),
            None => Ok(command),
        }
    }
}

fn fault_json(fault: Fault) -> serde_json::Value {
    match fault {
        Fault::Pass => json!("pass"),
        Fault::Blackhole => json!("blackhole"),
        Fault::Delay(d) => json!({ "delay": d.as_millis() as u64 }),
    }
}

/// Runs `command` on `proxy`; the reply line (without its newline).
pub fn execute(proxy: &FaultProxy, command: Command) -> String {
    match command {
        Command::Set(fault, Target::All) => {
            proxy.set_fault_all(fault);
            format!("ok {}", proxy.connections().len())
        }
        Command::Set(fault, Target::Live) => format!("ok {}", proxy.set_fault_live(fault)),
        Command::Set(fault, Target::Id(id)) => {
            if proxy.set_fault(id, fault) {
                "ok 1".to_owned()
            } else {
                format!("err no connection {id}")
            }
        }
        Command::Cut(Target::All | Target::Live) => format!("ok {}", proxy.cut_all()),
        Command::Cut(Target::Id(id)) => {
            if proxy.cut(id) {
                "ok 1".to_owned()
            } else {
                format!("err no connection {id}")
            }
        }
        Command::List => {
            let list: Vec<_> = proxy
                .connections()
                .into_iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "client": c.client.to_string(),
                        "upstreamLocal": c.upstream_local.to_string(),
                        "upstream": c.upstream.to_string(),
                        "fault": fault_json(c.fault),
                    })
                })
                .collect();
            format!("ok {}", serde_json::Value::Array(list))
        }
        Command::Upstream(addrs) => {
            proxy.set_upstreams(addrs);
            "ok 0".to_owned()
        }
    }
}

/// Serves the control protocol on `listener` for `proxy` until the task is
/// dropped. Each control connection is served on its own task.
pub async fn serve(listener: TcpListener, proxy: Arc<FaultProxy>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(session(stream, proxy.clone()));
    }
}

async fn session(stream: TcpStream, proxy: Arc<FaultProxy>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        // Bounded: a line longer than MAX_LINE ends the session.
        let n = match (&mut lines)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .await
        {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        if n > MAX_LINE {
            let _ = write.write_all(b"err line too long\n").await;
            return;
        }
        let reply = match line.trim().parse::<Command>() {
            Ok(command) => execute(&proxy, command),
            Err(e) => format!("err {e}"),
        };
        if write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}
