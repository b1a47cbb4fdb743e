//! `conns` authenticates every socket and fails at once, saying why, when
//! the server does not accept its tokens (here: signed with another secret
//! than the server's), instead of measuring anonymous sockets.

mod common;

use common::herald_bin;
use std::process::Command;

#[test]
fn tokens_the_server_refuses_fail_the_run_with_the_reason() {
    let herald = herald_bin();
    let server_cmd = format!(
        "{} serve --listen 127.0.0.1:{{port}} --auth-secret the-servers-own-secret",
        herald.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["conns", "--connections", "20", "--settle", "100ms"])
        .args(["--auth-secret", "another-secret", "--deadline", "60s"])
        .args(["--server-cmd", &server_cmd, "--json", "--quiet"])
        .env_remove("HERALD_AUTH_SECRET")
        .env_remove("HERALD_CONFIG")
        .output()
        .expect("herald-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did not accept its auth token") && stderr.contains("invalid signature"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("\"scenario\""),
        "no result for unauthenticated sockets"
    );
}
