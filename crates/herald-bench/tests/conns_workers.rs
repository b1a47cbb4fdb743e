//! The 100,000-socket demonstration (scripts/bench-100k.sh) small enough for
//! the suite: 2,000 handshaken, authenticated (a token each, signed with the
//! secret the bench gives the server it starts), subscribed sockets from two client
//! processes (two loopback source addresses) against `herald serve
//! --workers 2` over Redis (a random prefix), held idle with pings every
//! second, every one open at the end; one publication on every channel
//! reaches every socket, whichever worker holds it; the server side is
//! measured as the supervisor and its two workers. The same code path as
//! the run in docs/benchmarks.md ("100,000 sockets").

mod common;

use common::herald_bin;
use std::process::Command;

fn random_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

#[test]
fn sockets_held_across_two_workers_all_alive_and_reached_by_a_publication() {
    let herald = herald_bin();
    let broker = format!(
        "redis://127.0.0.1:6379?prefix=herald-bench-{:x}:",
        random_suffix()
    );
    let server_cmd = format!(
        "{} serve --listen 127.0.0.1:{{port}} --workers 2 --broker {broker} --ping-interval 1s",
        herald.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["conns", "--connections", "2000", "--per-worker", "1000"])
        .args(["--channels", "10", "--settle", "500ms", "--hold", "3s"])
        .args(["--check", "--check-timeout", "30s", "--deadline", "150s"])
        .args(["--server-cmd", &server_cmd, "--label", "herald"])
        .args(["--json", "--quiet"])
        .env_remove("HERALD_WORKERS")
        .env_remove("HERALD_BROKER")
        .output()
        .expect("herald-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "herald-bench conns failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no result line:\n{stdout}\n{stderr}"));
    let r: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(r["scenario"], "conns", "{r}");
    assert_eq!(r["connections"], 2000, "{r}");
    assert_eq!(r["workers"], 2, "two client processes: {r}");
    assert_eq!(
        r["server_processes"], 3,
        "the supervisor and two workers: {r}"
    );
    assert_eq!(
        r["authenticated"], true,
        "every socket authenticated with a token of its own: {r}"
    );
    assert_eq!(r["alive"], 2000, "{r}");
    assert_eq!(r["drops"], 0, "{r}");
    assert_eq!(r["verified"], 2000, "{r}");
    assert!(r["check_s"].as_f64().is_some(), "{r}");
    let idle = &r["server_idle"];
    assert!(idle["cpu_secs"].as_f64().unwrap() >= 0.0, "{r}");
    assert!(
        r["rss_after_mib"].as_f64().unwrap() > r["rss_before_mib"].as_f64().unwrap(),
        "{r}"
    );
}
