//! `herald-fixture`: exactly `herald serve` (same flags, same output) with
//! the test fixture registered. Used by the end-to-end suites only.

use clap::Parser;
use herald_cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    herald_cli::init_logging(cli.log_format());
    match cli.command {
        Command::Serve(args) => herald_cli::serve(args, herald_testkit::fixture).await,
    }
}
