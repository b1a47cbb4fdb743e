//! The subcommands of `herald`: `serve`, and the config tools
//! `check-config`, `print-config` and `genconfig`. [`run`] is what both the
//! `herald` binary and the test fixture run.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use herald::ServerBuilder;

use crate::config::{self, FileConfig, Layer};
use crate::{Cli, Command};

/// `herald check-config` options.
#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// The config file to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `herald genconfig` options.
#[derive(Debug, Clone, Args)]
pub struct GenconfigArgs {
    /// Write the file here instead of standard output (refuses to replace
    /// an existing file without --force).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Runs a parsed command line; `customize` adjusts the server of `serve`.
pub async fn run(
    cli: Cli,
    customize: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => crate::serve(args, customize)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::CheckConfig(args) => Ok(check_config(&args)),
        Command::PrintConfig(args) => print_config(&args),
        Command::Genconfig(args) => genconfig(&args),
    }
}

/// `herald check-config FILE`: the file alone (no environment, no flags).
fn check_config(args: &CheckConfigArgs) -> ExitCode {
    let loaded = config::read(&args.file)
        .map_err(|e| config::ConfigErrors(vec![e]))
        .and_then(|(path, text)| config::load_layers(Some((&path, &text)), [], Layer::default()));
    match loaded {
        Ok(resolved) => {
            println!("ok: {}: {}", args.file.display(), summary(&resolved.file));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "{}: {} error{}",
                args.file.display(),
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            for e in &errors.0 {
                let _ = writeln!(err, "{e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// "12 keys set, namespaces: chat, news".
fn summary(file: &FileConfig) -> String {
    let table = toml::Table::try_from(file).unwrap_or_default();
    let mut keys = 0;
    count(&table, &mut keys);
    let namespaces: Vec<&str> = file.namespaces.keys().map(|n| n.0.as_str()).collect();
    let namespaces = if namespaces.is_empty() {
        "no namespaces".to_owned()
    } else {
        format!("namespaces: {}", namespaces.join(", "))
    };
    format!(
        "{keys} key{} set, {namespaces}",
        if keys == 1 { "" } else { "s" }
    )
}

fn count(table: &toml::Table, n: &mut usize) {
    for value in table.values() {
        match value {
            toml::Value::Table(t) => count(t, n),
            _ => *n += 1,
        }
    }
}

/// `herald print-config [--config FILE] [flags]`.
fn print_config(args: &crate::ServeArgs) -> anyhow::Result<ExitCode> {
    let resolved = config::load(args, std::env::vars())?;
    for warning in &resolved.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", config::print::effective_toml(&resolved));
    Ok(ExitCode::SUCCESS)
}

/// `herald genconfig [-o FILE]`.
fn genconfig(args: &GenconfigArgs) -> anyhow::Result<ExitCode> {
    match &args.output {
        None => print!("{}", config::STARTER),
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true);
            if args.force {
                options.create(true).truncate(true);
            } else {
                options.create_new(true);
            }
            let mut file = options.open(path).with_context(|| {
                format!(
                    "cannot write {}{}",
                    path.display(),
                    if path.exists() && !args.force {
                        " (it exists: --force replaces it)"
                    } else {
                        ""
                    }
                )
            })?;
            file.write_all(config::STARTER.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
