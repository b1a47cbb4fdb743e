//! Requests for one Herald channel each, sent to the server that holds the
//! channel: the single path of every command other than subscriptions
//! (`PUBLISH`, the history and presence scripts, their plain commands).
//!
//! Why one path: publications, history and presence must reach the same
//! server for the same channel (the key scheme of [`crate::keys`] puts
//! them there), follow the same `MOVED` redirects in a cluster, and fail
//! the same way when a connection breaks. A batch of requests (a node
//! refreshing presence for many channels) is grouped by server and sent as
//! one pipeline per server, the servers in parallel; each request keeps its
//! own outcome:
//!
//! * `MOVED`: the slot map is patched (the manager hears of it) and the
//!   request goes to the new owner, at most [`MAX_REDIRECTS`] times;
//! * `ASK` (a slot being migrated): sent once more to the target, preceded
//!   by `ASKING`;
//! * `NOSCRIPT` (a restarted or new server): the script is loaded and the
//!   request sent again, once;
//! * a broken connection: the connection is dropped from the pool (the
//!   next request reconnects) and the manager is told.

use std::sync::Arc;

use redis::{Cmd, Script, ServerErrorKind, Value};
use tokio::sync::mpsc;

use crate::cluster::slots::key_slot;
use crate::connection::NodeAddr;
use crate::publisher::connection_broken;
use crate::sharded::shard_index;
use crate::shared::Shared;
use crate::subscriptions::{Event, Routing};

/// Redirects followed by one request.
pub(crate) const MAX_REDIRECTS: usize = 3;

/// One command about one Herald channel.
pub(crate) struct Request {
    /// The Herald channel (the shard hash of sharded Redis).
    channel: Arc<str>,
    /// The slot of the channel's names (Redis Cluster).
    slot: u16,
    cmd: Cmd,
    /// The script `cmd` runs with `EVALSHA`, loaded on `NOSCRIPT`.
    script: Option<&'static Script>,
}

impl Request {
    /// `cmd` about Herald channel `channel`, whose Redis pub/sub name is
    /// `name` ([`crate::keys::redis_channel`]; every key of the channel shares its
    /// slot).
    pub(crate) fn new(name: &str, channel: &str, cmd: Cmd) -> Self {
        Self {
            slot: key_slot(name.as_bytes()),
            channel: Arc::from(channel),
            cmd,
            script: None,
        }
    }

    /// An `EVALSHA` of `script` ([`crate::scripts::evalsha`]).
    pub(crate) fn script(name: &str, channel: &str, script: &'static Script, cmd: Cmd) -> Self {
        Self {
            script: Some(script),
            ..Self::new(name, channel, cmd)
        }
    }

    /// Whether it runs a script.
    pub(crate) fn is_script(&self) -> bool {
        self.script.is_some()
    }
}

/// One request on its way: which, preceded by `ASKING`, after how many
/// redirects.
#[derive(Clone, Copy)]
struct Attempting {
    index: usize,
    asking: bool,
    hops: usize,
}

/// What one request's attempt came to.
enum Attempt {
    Done(Result<Value, String>),
    Moved(NodeAddr),
    Ask(NodeAddr),
    NoScript,
}

/// Sends [`Request`]s where they belong.
pub(crate) struct Executor {
    shared: Arc<Shared>,
    routing: Routing,
    events: mpsc::UnboundedSender<Event>,
}

impl Executor {
    /// An executor over `routing`, telling the manager of redirects and
    /// broken connections through `events`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        routing: Routing,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        Self {
            shared,
            routing,
            events,
        }
    }

    /// Which pub/sub commands the routing uses.
    pub(crate) fn routing(&self) -> &Routing {
        &self.routing
    }

    fn route(&self, request: &Request) -> Result<NodeAddr, String> {
        match &self.routing {
            Routing::Hashed(servers) => {
                Ok(servers[shard_index(&request.channel, servers.len())].clone())
            }
            Routing::Cluster { .. } => self
                .shared
                .topology()
                .owner(request.slot)
                .cloned()
                .ok_or_else(|| format!("no known primary serves slot {}", request.slot)),
        }
    }

    /// Sends every request and returns their outcomes, in order.
    pub(crate) async fn execute(&self, requests: &[Request]) -> Vec<Result<Value, String>> {
        let mut results: Vec<Option<Result<Value, String>>> = vec![None; requests.len()];
        let mut pending: Vec<(NodeAddr, Attempting)> = Vec::with_capacity(requests.len());
        for (index, r) in requests.iter().enumerate() {
            match self.route(r) {
                Ok(addr) => pending.push((
                    addr,
                    Attempting {
                        index,
                        asking: false,
                        hops: 0,
                    },
                )),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        while !pending.is_empty() {
            let mut groups: Vec<(NodeAddr, Vec<Attempting>)> = Vec::new();
            for (addr, attempt) in pending.drain(..) {
                match groups.iter_mut().find(|(a, _)| *a == addr) {
                    Some((_, items)) => items.push(attempt),
                    None => groups.push((addr, vec![attempt])),
                }
            }
            let rounds = groups
                .iter()
                .map(|(addr, items)| self.send_group(addr, items, requests));
            let outcomes = futures_util::future::join_all(rounds).await;
            for ((_, items), attempts) in groups.iter().zip(outcomes) {
                for (&Attempting { index: i, hops, .. }, attempt) in items.iter().zip(attempts) {
                    match attempt {
                        Attempt::Done(result) => results[i] = Some(result),
                        Attempt::NoScript => {
                            results[i] = Some(Err("script not loaded".to_owned()));
                        }
                        Attempt::Moved(to) | Attempt::Ask(to) if hops >= MAX_REDIRECTS => {
                            results[i] = Some(Err(format!(
                                "slot {}: too many redirects (last to {to})",
                                requests[i].slot
                            )));
                        }
                        Attempt::Moved(to) => {
                            let _ = self.events.send(Event::Redirect {
                                slot: requests[i].slot,
                                addr: to.clone(),
                            });
                            let next = Attempting {
                                index: i,
                                asking: false,
                                hops: hops + 1,
                            };
                            pending.push((to, next));
                        }
                        Attempt::Ask(to) => {
                            let next = Attempting {
                                index: i,
                                asking: true,
                                hops: hops + 1,
                            };
                            pending.push((to, next));
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("not sent".to_owned())))
            .collect()
    }

    /// One server's share of a batch: one pipeline, and once more for the
    /// requests whose script the server did not know.
    async fn send_group(
        &self,
        addr: &NodeAddr,
        items: &[Attempting],
        requests: &[Request],
    ) -> Vec<Attempt> {
        let mut conn = match self.shared.pool.get(addr).await {
            Ok(conn) => conn,
            Err(e) => {
                return items
                    .iter()
                    .map(|_| Attempt::Done(Err(e.clone())))
                    .collect();
            }
        };
        let mut attempts = self.send_pipeline(addr, &mut conn, items, requests).await;
        let missing: Vec<usize> = (0..items.len())
            .filter(|&k| matches!(attempts[k], Attempt::NoScript))
            .collect();
        if missing.is_empty() {
            return attempts;
        }
        let mut loaded: Vec<&Script> = Vec::new();
        for &k in &missing {
            if let Some(script) = requests[items[k].index].script
                && !loaded.iter().any(|s| s.get_hash() == script.get_hash())
            {
                if let Err(e) = script.load_async(&mut conn).await {
                    let e = format!("{addr}: SCRIPT LOAD: {e}");
                    for &k in &missing {
                        attempts[k] = Attempt::Done(Err(e.clone()));
                    }
                    return attempts;
                }
                loaded.push(script);
            }
        }
        let again: Vec<Attempting> = missing.iter().map(|&k| items[k]).collect();
        let retried = self.send_pipeline(addr, &mut conn, &again, requests).await;
        for (k, attempt) in missing.into_iter().zip(retried) {
            attempts[k] = attempt;
        }
        attempts
    }

    async fn send_pipeline(
        &self,
        addr: &NodeAddr,
        conn: &mut redis::aio::MultiplexedConnection,
        items: &[Attempting],
        requests: &[Request],
    ) -> Vec<Attempt> {
        let mut pipe = redis::pipe();
        for item in items {
            if item.asking {
                pipe.cmd("ASKING").ignore();
            }
            pipe.add_command(requests[item.index].cmd.clone());
        }
        pipe.ignore_errors();
        let replies: Vec<Value> = match pipe.query_async(conn).await {
            Ok(replies) => replies,
            Err(e) => {
                if connection_broken(&e) {
                    self.shared.pool.invalidate(addr);
                    let _ = self.events.send(Event::Suspect { addr: addr.clone() });
                }
                let e = format!("{addr}: {e}");
                return items
                    .iter()
                    .map(|_| Attempt::Done(Err(e.clone())))
                    .collect();
            }
        };
        if replies.len() != items.len() {
            let e = format!(
                "{addr}: {} replies to {} commands",
                replies.len(),
                items.len()
            );
            return items
                .iter()
                .map(|_| Attempt::Done(Err(e.clone())))
                .collect();
        }
        replies
            .into_iter()
            .map(|reply| match reply {
                Value::ServerError(e) => classify_error(addr, e),
                value => Attempt::Done(Ok(value)),
            })
            .collect()
    }
}

fn classify_error(addr: &NodeAddr, e: redis::ServerError) -> Attempt {
    let target = || {
        e.details()
            .and_then(|d| d.split_ascii_whitespace().nth(1))
            .and_then(NodeAddr::parse)
    };
    match e.kind() {
        Some(ServerErrorKind::Moved) => match target() {
            Some(to) => Attempt::Moved(to),
            None => Attempt::Done(Err(format!("{addr}: {e}"))),
        },
        Some(ServerErrorKind::Ask) => match target() {
            Some(to) => Attempt::Ask(to),
            None => Attempt::Done(Err(format!("{addr}: {e}"))),
        },
        Some(ServerErrorKind::NoScript) => Attempt::NoScript,
        _ => Attempt::Done(Err(format!("{addr}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(resp: &[u8]) -> redis::ServerError {
        match redis::parse_redis_value(resp).unwrap() {
            Value::ServerError(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_are_classified() {
        let here = NodeAddr::new("127.0.0.1", 1);
        let to = NodeAddr::new("127.0.0.1", 7001);
        assert!(matches!(
            classify_error(&here, server_error(b"-MOVED 12 127.0.0.1:7001\r\n")),
            Attempt::Moved(a) if a == to
        ));
        assert!(matches!(
            classify_error(&here, server_error(b"-ASK 12 127.0.0.1:7001\r\n")),
            Attempt::Ask(a) if a == to
        ));
        assert!(matches!(
            classify_error(&here, server_error(b"-NOSCRIPT No matching script\r\n")),
            Attempt::NoScript
        ));
        assert!(matches!(
            classify_error(&here, server_error(b"-MOVED garbage\r\n")),
            Attempt::Done(Err(_))
        ));
        assert!(matches!(
            classify_error(&here, server_error(b"-ERR boom\r\n")),
            Attempt::Done(Err(e)) if e.contains("boom")
        ));
    }
}
