//! `herald-fuzz`: runs the fuzz targets (see the crate documentation).
//!
//! ```text
//! herald-fuzz [--target inbound|envelope|jwt]... [--inputs N] [--seed S]
//! herald-fuzz --replay FILE --target T
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use herald_fuzz::runner::{self, Failure, Options, Report};
use herald_fuzz::targets::{self, Target};

#[derive(Parser)]
#[command(about = "Fuzzes Herald's frame parser, envelope decoder and JWT verification")]
struct Args {
    /// Targets to run (default: all).
    #[arg(long, value_enum)]
    target: Vec<Target>,
    /// Inputs per target.
    #[arg(long, default_value_t = 100_000)]
    inputs: u64,
    /// Seed of the run (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Longest input, bytes.
    #[arg(long, default_value_t = 65_536)]
    max_len: usize,
    /// Where failing inputs are written.
    #[arg(long, default_value = "target/fuzz-failures")]
    failures: PathBuf,
    /// Progress line every N inputs (0: none).
    #[arg(long, default_value_t = 1_000_000)]
    progress: u64,
    /// Runs one saved input (with one --target) and reports.
    #[arg(long)]
    replay: Option<PathBuf>,
}

fn print(r: &Report) {
    println!(
        "{:<8} {:>11} inputs in {:>8.1} s = {:>9.0} inputs/s; max held per input {} B (input of {} B), {:.1}% of the bound at most; longest input {} B",
        r.target.name(),
        r.inputs,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.max_peak,
        r.max_peak_len,
        r.max_bound_ratio * 100.0,
        r.longest,
    );
}

fn describe(f: &Failure) -> String {
    match f {
        Failure::Panic { message } => format!("panicked: {message}"),
        Failure::Allocation { peak, bound } => {
            format!("held {peak} B at once, over the bound of {bound} B")
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    runner::quiet_panics();
    let targets = if args.target.is_empty() {
        Target::ALL.to_vec()
    } else {
        args.target.clone()
    };
    if let Some(path) = &args.replay {
        let input =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let [target] = targets[..] else {
            anyhow::bail!("--replay needs exactly one --target");
        };
        return Ok(match runner::run_one(target, &targets::engine(), &input) {
            Ok(peak) => {
                println!("{}: ok, held {peak} B at most", target.name());
                ExitCode::SUCCESS
            }
            Err(f) => {
                println!("{}: {}", target.name(), describe(&f));
                ExitCode::FAILURE
            }
        });
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    println!("herald-fuzz seed {seed}");
    let options = Options {
        inputs: args.inputs,
        seed,
        max_len: args.max_len,
        failures: args.failures.clone(),
        progress: args.progress,
    };
    let mut failed = false;
    for target in targets {
        let report = runner::run(target, &options);
        print(&report);
        if let Some((f, path)) = &report.failure {
            failed = true;
            println!(
                "{}: FAILED after {} inputs: {}; input saved to {} (replay: herald-fuzz --target {} --replay {})",
                target.name(),
                report.inputs,
                describe(f),
                path.display(),
                target.name(),
                path.display()
            );
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
