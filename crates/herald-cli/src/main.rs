//! `herald`: the standalone server binary.

use std::process::ExitCode;

use clap::Parser;
use herald_cli::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    herald_cli::run(Cli::parse(), |b| b).await
}
