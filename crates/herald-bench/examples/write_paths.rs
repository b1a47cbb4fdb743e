//! What one burst of a fan-out costs the writer, by the way its writes
//! reach the kernel: the measurement behind the write path Herald keeps
//! (docs/benchmarks.md, "Write paths").
//!
//! N loopback TCP connections; a writer thread sends every connection the
//! same WebSocket text frame (a 2-byte header and the payload, as two
//! slices) once per round, and a reader runtime drains the peers. A round
//! starts when the previous one was read in full, so every round is a clean
//! burst like one publication to N subscribers. Per mode, the writer
//! thread's CPU time per write (which on loopback includes the receiver's
//! TCP processing, as it does for a real server) and the burst's wall time
//! (until the last write returned: what the last subscriber waits):
//!
//! * `writev`: one `writev` per connection (Herald's path: one vectored
//!   write per socket per burst);
//! * `cork`: `TCP_CORK` on, `writev`, `TCP_CORK` off per connection (what
//!   corking costs when the batch is already one write);
//! * `writes-corked`: with `--frames K`, K plain `write`s per connection
//!   inside a cork instead of one `writev` of K frames;
//! * `io_uring`: one `IORING_OP_WRITEV` per connection, all N submitted with
//!   one `io_uring_enter` (the `io-uring` crate) and waited for together.
//!
//! ```sh
//! cargo run --release -p herald-bench --example write_paths -- --connections 1000 --rounds 300
//! ```

use std::io::{self, IoSlice, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use io_uring::{IoUring, opcode, types};
use tokio::io::AsyncReadExt;

#[derive(Debug, Parser)]
struct Args {
    /// Connections written per round.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Rounds per mode.
    #[arg(long, default_value_t = 300)]
    rounds: usize,
    /// Payload bytes per frame (a 100-byte publication is about 150 on the
    /// wire).
    #[arg(long, default_value_t = 150)]
    payload: usize,
    /// Frames per connection per round.
    #[arg(long, default_value_t = 1)]
    frames: usize,
    /// Modes to run (comma-separated): writev, cork, writes-corked, io_uring.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "writev,cork,io_uring,writev"
    )]
    modes: Vec<String>,
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn set_cork(s: &TcpStream, on: bool) -> io::Result<()> {
    let v: libc::c_int = on.into();
    // SAFETY: a valid socket and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes all of `slices` to a blocking socket.
fn write_all_vectored(mut s: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<()> {
    let total: usize = slices.iter().map(|b| b.len()).sum();
    let n = s.write_vectored(slices)?;
    if n < total {
        // Rare on an empty socket buffer: finish with plain writes.
        let flat: Vec<u8> = slices.iter().flat_map(|b| b.iter().copied()).collect();
        s.write_all(&flat[n..])?;
    }
    Ok(())
}

struct Round {
    cpu: Duration,
    wall: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let n = args.connections;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut writers = Vec::with_capacity(n);
    let mut peers = Vec::with_capacity(n);
    for _ in 0..n {
        let w = TcpStream::connect(addr)?;
        w.set_nodelay(true)?;
        writers.push(w);
        let (p, _) = listener.accept()?;
        p.set_nonblocking(true)?;
        peers.push(p);
    }
    // The readers: a runtime of their own, one task per peer.
    let read = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let reader = {
        let read = read.clone();
        std::thread::spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for p in peers {
                    let read = read.clone();
                    let mut p = tokio::net::TcpStream::from_std(p).expect("register peer");
                    tasks.push(tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(k) = p.read(&mut buf).await {
                            if k == 0 {
                                break;
                            }
                            read.fetch_add(k as u64, Ordering::Release);
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            })
        })
    };

    anyhow::ensure!(args.payload < 1 << 16, "--payload must be below 65,536");
    // A text frame's header as a server sends it (FIN, no mask).
    let header: Vec<u8> = if args.payload < 126 {
        vec![0x81, args.payload as u8]
    } else {
        vec![0x81, 126, (args.payload >> 8) as u8, args.payload as u8]
    };
    let header = &header[..];
    let payload = vec![b'x'; args.payload];
    let frame_len = (header.len() + payload.len()) as u64;
    let per_round = frame_len * (n * args.frames) as u64;
    let mut slices = Vec::new();
    for _ in 0..args.frames {
        slices.push(IoSlice::new(header));
        slices.push(IoSlice::new(&payload));
    }
    let iovecs: Vec<libc::iovec> = slices
        .iter()
        .map(|s| libc::iovec {
            iov_base: s.as_ptr() as *mut libc::c_void,
            iov_len: s.len(),
        })
        .collect();
    let mut ring = IoUring::new((n.next_power_of_two() as u32).max(8))?;
    let mut expected = read.load(Ordering::Acquire);

    println!(
        "{n} connections, {} frame(s) of {} bytes each per round, {} rounds per mode",
        args.frames, frame_len, args.rounds
    );
    println!(
        "{:<14} {:>16} {:>16} {:>16} {:>12}",
        "mode", "CPU µs/write", "burst ms p50", "burst ms p99", "syscalls/conn"
    );
    for mode in &args.modes {
        let mut rounds = Vec::with_capacity(args.rounds);
        for r in 0..args.rounds + 10 {
            let (c0, t0) = (thread_cpu(), Instant::now());
            match mode.as_str() {
                "writev" => {
                    for w in &writers {
                        write_all_vectored(w, &slices)?;
                    }
                }
                "cork" => {
                    for w in &writers {
                        set_cork(w, true)?;
                        write_all_vectored(w, &slices)?;
                        set_cork(w, false)?;
                    }
                }
                "writes-corked" => {
                    for mut w in &writers {
                        set_cork(w, true)?;
                        for _ in 0..args.frames {
                            w.write_all(header)?;
                            w.write_all(&payload)?;
                        }
                        set_cork(w, false)?;
                    }
                }
                "io_uring" => {
                    for (i, w) in writers.iter().enumerate() {
                        let sqe = opcode::Writev::new(
                            types::Fd(w.as_raw_fd()),
                            iovecs.as_ptr(),
                            iovecs.len() as u32,
                        )
                        .build()
                        .user_data(i as u64);
                        // SAFETY: the iovecs and the buffers they point to
                        // outlive the submission (waited for just below).
                        unsafe { ring.submission().push(&sqe)? };
                    }
                    ring.submit_and_wait(n)?;
                    let mut done = 0;
                    for cqe in ring.completion() {
                        if cqe.result() < frame_len as i32 * args.frames as i32 {
                            anyhow::bail!("short or failed io_uring write: {}", cqe.result());
                        }
                        done += 1;
                    }
                    anyhow::ensure!(done == n, "{done} completions of {n}");
                }
                other => anyhow::bail!("unknown mode {other}"),
            }
            let round = Round {
                cpu: thread_cpu() - c0,
                wall: t0.elapsed(),
            };
            expected += per_round;
            let deadline = Instant::now() + Duration::from_secs(10);
            while read.load(Ordering::Acquire) < expected {
                anyhow::ensure!(Instant::now() < deadline, "the readers fell behind");
                std::thread::yield_now();
            }
            if r >= 10 {
                rounds.push(round);
            }
        }
        let writes = (rounds.len() * n) as f64;
        let cpu: Duration = rounds.iter().map(|r| r.cpu).sum();
        let mut walls: Vec<Duration> = rounds.iter().map(|r| r.wall).collect();
        walls.sort();
        let pick = |q: f64| walls[((walls.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        let syscalls = match mode.as_str() {
            "writev" => "1".to_owned(),
            "cork" => "3".to_owned(),
            "writes-corked" => format!("{}", 2 + 2 * args.frames),
            _ => format!("{:.4}", 1.0 / n as f64),
        };
        println!(
            "{:<14} {:>16.2} {:>16.2} {:>16.2} {:>12}",
            mode,
            cpu.as_secs_f64() * 1e6 / writes,
            pick(0.5),
            pick(0.99),
            syscalls
        );
    }
    drop(writers);
    let _ = reader.join();
    Ok(())
}
