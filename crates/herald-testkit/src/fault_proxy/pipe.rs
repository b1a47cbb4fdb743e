//! One direction of a proxied connection: read from one peer, hold the
//! bytes while the connection is blackholed, age them by the delay, write
//! them to the other peer, and pass its end of stream (FIN) along.
//!
//! Reading and writing are separate loops joined by a bounded queue, so a
//! delay holds many chunks in flight at once (latency, not throughput) and
//! the memory held per direction stays bounded (`QUEUE` chunks of at most
//! `CHUNK` bytes).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::Fault;

/// Largest read.
const CHUNK: usize = 16 * 1024;
/// Chunks read but not yet written, per direction.
const QUEUE: usize = 64;

struct Chunk {
    due: Instant,
    data: Vec<u8>,
}

/// Waits until the connection is not blackholed (at once when it is not).
async fn flowing(fault: &mut watch::Receiver<Fault>) {
    // An error means the controller forgot the connection: it is ending.
    let _ = fault.wait_for(|f| *f != Fault::Blackhole).await;
}

/// Copies `from` to `to` under `fault` until `from` ends (then shuts `to`'s
/// writing down) or either fails.
pub(super) async fn pump<R, W>(
    mut from: R,
    mut to: W,
    fault: watch::Receiver<Fault>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Chunk>(QUEUE);
    let mut read_fault = fault.clone();
    let reading = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            // Blackholed: leave the bytes in the kernel, as a dead link
            // would (the sender's window fills; nothing is acknowledged
            // beyond it).
            flowing(&mut read_fault).await;
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), io::Error>(());
            }
            let data = buf[..n].to_vec();
            let delay = match *read_fault.borrow() {
                Fault::Delay(d) => d,
                _ => std::time::Duration::ZERO,
            };
            let chunk = Chunk {
                due: Instant::now() + delay,
                data,
            };
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
        }
    };
    let mut write_fault = fault;
    let writing = async move {
        while let Some(chunk) = rx.recv().await {
            tokio::time::sleep_until(chunk.due).await;
            // Read before a blackhole began: held too.
            flowing(&mut write_fault).await;
            to.write_all(&chunk.data).await?;
        }
        // The end of stream goes through only once everything before it
        // did, and not while blackholed.
        flowing(&mut write_fault).await;
        to.shutdown().await
    };
    tokio::try_join!(reading, writing).map(|_| ())
}
