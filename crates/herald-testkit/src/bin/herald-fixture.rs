//! `herald-fixture`: exactly `herald` (same subcommands, flags, config and
//! output) with the test fixture registered in `serve`. Used by the
//! end-to-end suites only.

use std::process::ExitCode;

use clap::Parser;
use herald_cli::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    herald_cli::run(Cli::parse(), herald_testkit::fixture).await
}
