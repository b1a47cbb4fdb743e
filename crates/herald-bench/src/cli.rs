//! Command-line parsing and dispatch. Exit status: 0 when the scenario ran
//! (whatever its figures), 1 on an error, 2 when the deadline passed, 3 when
//! the scenario ran but one of its own checks failed (`storm`: a client not
//! back, a client without its publication afterwards, `--max-rss-mib`).

use std::future::Future;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio::runtime::{Builder, Runtime};

use crate::common::Common;
use crate::conns::{self, ConnsArgs};
use crate::fanout::{self, FanoutArgs};
use crate::recover::{self, RecoverArgs};
use crate::report::{self, Outcome};
use crate::storm::{self, StormArgs};
use crate::worker::{self, WorkerArgs};

/// Load generator speaking SocketCluster v2: runs the same scenario against
/// Herald or socketcluster-server and reports throughput, latency,
/// correctness, memory and recovery figures.
#[derive(Debug, Parser)]
#[command(name = "herald-bench", version, about)]
pub struct Cli {
    /// The scenario.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// P publishers, C channels, S subscribers per channel: deliveries/s,
    /// latency percentiles, lost/duplicated/reordered deliveries.
    Fanout(FanoutArgs),
    /// N idle subscribed connections: the server's memory per connection.
    Conns(ConnsArgs),
    /// N clients with backoff and jitter; the server is SIGKILLed and
    /// restarted: time until all are back and resubscribed.
    Storm(StormArgs),
    /// A client misses N publications on a channel with history and
    /// recovers them on subscribe: time to the reply (Herald only).
    Recover(RecoverArgs),
    /// Turn `--json` result lines into a Markdown table of medians and ratios.
    Report(ReportArgs),
    /// (internal) A client worker process of `conns` and `storm`.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// `report` options.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Files of JSON result lines (`-` for stdin).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Labels of the reference servers, one column (and one ratio column)
    /// each: repeat the option or separate them with commas.
    #[arg(long, value_delimiter = ',', default_value = "socketcluster")]
    pub baseline: Vec<String>,
    /// Label of the server compared with them.
    #[arg(long, default_value = "herald")]
    pub subject: String,
    /// Label of the cost floor (one of the baselines): the target column
    /// then also says whether the subject's fan-out deliveries per second
    /// reach the floor's and its CPU seconds per million deliveries stay
    /// within the floor's.
    #[arg(long)]
    pub floor: Option<String>,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn runtime(threads: usize) -> std::io::Result<Runtime> {
    if threads <= 1 {
        Builder::new_current_thread().enable_all().build()
    } else {
        Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Runs a scenario on `rt` within `deadline` and prints its result.
fn scenario(
    rt: Runtime,
    common: &Common,
    deadline: Duration,
    work: impl Future<Output = anyhow::Result<Outcome>>,
) -> anyhow::Result<ExitCode> {
    let out = rt.block_on(async { tokio::time::timeout(deadline, work).await });
    drop(rt);
    match out {
        Err(_) => {
            eprintln!(
                "herald-bench: deadline of {} exceeded",
                humantime::format_duration(deadline)
            );
            Ok(ExitCode::from(2))
        }
        Ok(Err(e)) => Err(e),
        Ok(Ok(outcome)) => {
            if common.json {
                println!("{}", outcome.json_line());
            } else {
                print!("{}", outcome.human());
            }
            let failures = outcome.failures();
            for f in &failures {
                eprintln!("herald-bench: check failed: {f}");
            }
            Ok(if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Fanout(a) => {
            let deadline = a.common.deadline.unwrap_or_else(|| a.default_deadline());
            let work = async { fanout::run(&a).await.map(Outcome::Fanout) };
            scenario(runtime(a.threads)?, &a.common, deadline, work)
        }
        Command::Conns(a) => {
            let deadline = a.common.deadline.unwrap_or_else(|| a.default_deadline());
            let work = async { conns::run(&a).await.map(Outcome::Conns) };
            scenario(runtime(1)?, &a.common, deadline, work)
        }
        Command::Storm(a) => {
            let deadline = a.common.deadline.unwrap_or_else(|| a.default_deadline());
            let work = async { storm::run(&a).await.map(Outcome::Storm) };
            scenario(runtime(1)?, &a.common, deadline, work)
        }
        Command::Recover(a) => {
            let deadline = a.common.deadline.unwrap_or_else(|| a.default_deadline());
            let work = async { recover::run(&a).await.map(Outcome::Recover) };
            scenario(runtime(1)?, &a.common, deadline, work)
        }
        Command::Worker(a) => {
            runtime(1)?.block_on(worker::run(a))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(a) => {
            let mut text = String::new();
            for path in &a.inputs {
                if path.as_os_str() == "-" {
                    std::io::stdin().read_to_string(&mut text)?;
                } else {
                    text.push_str(
                        &std::fs::read_to_string(path)
                            .with_context(|| format!("cannot read {}", path.display()))?,
                    );
                }
                text.push('\n');
            }
            let outcomes = report::parse_lines(&text);
            if outcomes.is_empty() {
                anyhow::bail!("no result lines in the input");
            }
            print!(
                "{}",
                report::markdown(&outcomes, &a.baseline, &a.subject, a.floor.as_deref())
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "herald-bench",
            "fanout",
            "--url",
            "ws://127.0.0.1:1/socketcluster/",
            "-P",
            "100",
            "-C",
            "100",
            "-S",
            "100",
            "--rate",
            "500",
            "--duration",
            "3s",
        ])
        .unwrap();
        match cli.command {
            Command::Fanout(a) => {
                assert_eq!((a.publishers, a.channels, a.subscribers), (100, 100, 100));
                assert_eq!(a.duration, Duration::from_secs(3));
                assert_eq!(a.window(), 64);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["herald-bench", "fanout", "--url", "x", "--server-cmd", "y"])
                .is_err()
        );
    }
}
