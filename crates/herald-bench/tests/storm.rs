//! A reconnect storm small enough for the suite: 2,000 clients in two worker
//! processes (two loopback source addresses) on 100 channels, `herald serve`
//! SIGKILLed and restarted by the bench. Every client must be back and
//! resubscribed, and receive the publication of its channel afterwards; the
//! restarted server's peak RSS must stay under a bound. The same code path
//! as the 20,000-client run in docs/benchmarks.md ("Reconnect storm").

mod common;

use common::herald_bin;
use std::process::Command;

/// The restarted debug-build server's peak RSS bound for 2,000 clients
/// (measured about 40 MiB; a leak per reconnection would blow it).
const MAX_RSS_MIB: f64 = 200.0;

#[test]
fn every_client_comes_back_resubscribes_and_gets_a_publication_on_its_channel() {
    let herald = herald_bin();
    let server_cmd = format!("{} serve --listen 127.0.0.1:{{port}}", herald.display());
    let out = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["storm", "--clients", "2000", "--per-worker", "1000"])
        .args(["--channels", "100"])
        .args(["--backoff-initial", "100ms", "--backoff-max", "1s"])
        .args(["--settle", "200ms", "--recovery-timeout", "30s"])
        .args(["--check-timeout", "20s", "--deadline", "150s"])
        .args(["--max-rss-mib", &MAX_RSS_MIB.to_string()])
        .args(["--server-cmd", &server_cmd, "--label", "herald"])
        .args(["--json", "--quiet"])
        .output()
        .expect("herald-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "herald-bench storm failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no result line:\n{stdout}\n{stderr}"));
    let r: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(r["scenario"], "storm", "{r}");
    assert_eq!(r["clients"], 2000, "{r}");
    assert_eq!(r["workers"], 2, "{r}");
    assert_eq!(r["back"], 2000, "every client back and resubscribed: {r}");
    assert!(r["recovery_s"].as_f64().is_some(), "{r}");
    assert_eq!(r["verified"], 2000, "every client got its publication: {r}");
    assert!(r["check_s"].as_f64().is_some(), "{r}");
    let hwm = r["server_hwm_mib"].as_f64().unwrap();
    assert!(hwm > 0.0 && hwm <= MAX_RSS_MIB, "{r}");
}
