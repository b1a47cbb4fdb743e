//! `herald-echo [--listen ADDR] [--path PATH] [--max-payload BYTES]`: a
//! WebSocket echo server on Herald's own WebSocket stack
//! (`herald::echo_router`, feature `test-echo`), for the Autobahn
//! conformance suite (`scripts/autobahn.sh`). Prints
//! `herald-echo listening on ws://ADDR/PATH` once it accepts connections.
//! Test use only.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Listen address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// WebSocket path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Largest accepted message (Herald's `max_payload`). The default is
    /// above Autobahn's largest message (16 MiB, cases 9.x).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    max_payload: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("herald-echo listening on ws://{addr}{}", args.path);
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, herald::echo_router(&args.path, args.max_payload))
        .await
        .context("serve")
}
