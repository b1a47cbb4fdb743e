//! `herald-fault-proxy`: the test suites' fault proxy as a process, driven
//! over a line-based control socket (see `herald_testkit::fault_proxy::control`).
//!
//! Prints `proxy ADDR control ADDR` once both listen, then serves until
//! SIGTERM / SIGINT, or until its stdin closes with `--exit-on-stdin-close`
//! (so it dies with the test runner that spawned it).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use herald_testkit::fault_proxy::{FaultProxy, control};
use std::io::Read as _;
use tokio::signal::unix::{SignalKind, signal};

/// A TCP proxy whose connections tests can delay, blackhole or reset.
#[derive(Debug, Parser)]
#[command(name = "herald-fault-proxy", version, about)]
struct Args {
    /// Where to forward connections.
    #[arg(long)]
    upstream: SocketAddr,
    /// Where clients connect.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where the control protocol is served.
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// Exit when stdin reaches its end.
    #[arg(long)]
    exit_on_stdin_close: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let proxy = Arc::new(
        FaultProxy::bind(args.listen, args.upstream)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?,
    );
    let control_listener = tokio::net::TcpListener::bind(args.control)
        .await
        .with_context(|| format!("cannot listen on {}", args.control))?;
    println!(
        "proxy {} control {}",
        proxy.addr(),
        control_listener.local_addr()?
    );
    let serving = tokio::spawn(control::serve(control_listener, proxy.clone()));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    if args.exit_on_stdin_close {
        // A blocking read on a thread of its own: stdin is no socket.
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = eof_tx.send(());
        });
    }
    let watch_stdin = args.exit_on_stdin_close;
    let stdin_closed = async move {
        if watch_stdin {
            let _ = eof_rx.await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = stdin_closed => {}
    }
    serving.abort();
    Ok(())
}
