//! The config tools as processes: `herald check-config` (ok, and every
//! error with its key and line), `herald genconfig` (a starter file that
//! `check-config` accepts), `herald print-config` (file, then variables,
//! then flags; secrets redacted; its output a valid file), a bad variable
//! stopping `herald serve`, and `unknown_procedures = "ignore"` over a real
//! socket.

mod common;

use std::process::{Output, Stdio};

use common::{BIN, Herald, TempDir, connect, http_get, within};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_websockets::Message;

/// Runs `herald ARGS` with only the `HERALD_` variables of `env`.
fn herald(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("HERALD_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .expect("run herald")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn genconfig_writes_a_starter_file_that_check_config_accepts() {
    let dir = TempDir::new("genconfig");
    let file = dir.path("herald.toml");
    let file = file.to_str().unwrap();
    let out = herald(&["genconfig", "-o", file], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(file).unwrap();
    let stdout = herald(&["genconfig"], &[]).stdout;
    assert_eq!(written, text(&stdout), "-o writes what stdout shows");

    let out = herald(&["check-config", file], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ok = text(&out.stdout);
    assert!(ok.starts_with(&format!("ok: {file}: ")), "{ok}");

    // An existing file is kept unless --force.
    let out = herald(&["genconfig", "-o", file], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(file, "# mine\n").unwrap();
    assert!(
        herald(&["genconfig", "-o", file, "--force"], &[])
            .status
            .success()
    );
    assert_eq!(std::fs::read_to_string(file).unwrap(), written);
}

#[test]
fn check_config_names_every_error_with_its_key_and_line() {
    let dir = TempDir::new("check-config");
    let file = dir.path("bad.toml");
    std::fs::write(
        &file,
        [
            "listen = \"127.0.0.1:9000\"",   // 1
            "ping_intervall = \"8s\"",       // 2: unknown top-level key
            "max_payload = \"big\"",         // 3: wrong type
            "",                              // 4
            "[namespaces.chat]",             // 5
            "history_size = 10",             // 6
            "history_ttl = \"ten minutes\"", // 7: bad duration
            "subscribe = \"everyone\"",      // 8: bad rule
            "presense = true",               // 9: unknown key in a namespace
            "",                              // 10
            "[namespaces.news]",             // 11
            "recover = true",                // 12: recover without history
        ]
        .join("\n"),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = herald(&["check-config", file], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no ok line");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], format!("{file}: 6 errors"), "{stderr}");
    for (line, key, needle) in [
        (
            2,
            "ping_intervall",
            "unknown key `ping_intervall` (did you mean `ping_interval`?)",
        ),
        (3, "max_payload", "invalid type: string \"big\""),
        (7, "namespaces.chat.history_ttl", "expected a duration"),
        (8, "namespaces.chat.subscribe", "unknown value \"everyone\""),
        (
            9,
            "namespaces.chat.presense",
            "unknown key `presense` (did you mean `presence`?)",
        ),
        (11, "namespaces.news", "recover needs history"),
    ] {
        let start = format!("{file}:{line}: key `{key}`: ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&start) && l.contains(needle)),
            "no line {start}...{needle} in:\n{stderr}"
        );
    }

    let out = herald(&["check-config", "/nonexistent/herald.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read config file /nonexistent/herald.toml"));
}

#[test]
fn print_config_merges_file_variables_and_flags_and_redacts_secrets() {
    let dir = TempDir::new("print-config");
    let file = dir.path("herald.toml");
    std::fs::write(
        &file,
        "auth_secret = \"file-secret\"\nping_interval = \"1s\"\nping_timeout = \"11s\"\nmax_payload = 1000\n\
         broker = \"redis://:hunter2@127.0.0.1:6379\"\n[namespaces.chat]\nhistory_size = 5\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = herald(
        &["print-config", "--config", file, "--ping-interval", "3s"],
        &[
            ("HERALD_PING_INTERVAL", "2s"),
            ("HERALD_PING_TIMEOUT", "12s"),
            ("HERALD_NAMESPACES_CHAT_RECOVER", "true"),
            (
                "HERALD_ALLOWED_ORIGINS",
                "https://a.example,https://b.example",
            ),
            ("HERALD_AUTH_SECRET", "env-secret"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let t: toml::Table = toml::from_str(&printed).expect("print-config writes TOML");
    assert_eq!(t["ping_interval"].as_str(), Some("3s"), "the flag wins");
    assert_eq!(
        t["ping_timeout"].as_str(),
        Some("12s"),
        "the variable wins over the file"
    );
    assert_eq!(
        t["max_payload"].as_integer(),
        Some(1000),
        "the file over the default"
    );
    assert_eq!(
        t["handshake_timeout"].as_str(),
        Some("10s"),
        "defaults are shown"
    );
    assert_eq!(t["allowed_origins"].as_array().map(Vec::len), Some(2));
    let chat = t["namespaces"]["chat"].as_table().unwrap();
    assert_eq!(chat["history_size"].as_integer(), Some(5));
    assert_eq!(chat["recover"].as_bool(), Some(true));
    assert_eq!(t["auth_secret"].as_str(), Some("<redacted>"));
    assert_eq!(
        t["broker"].as_str(),
        Some("redis://:<redacted>@127.0.0.1:6379")
    );
    for secret in ["file-secret", "env-secret", "hunter2"] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }

    // What it prints is a config file.
    let again = dir.path("printed.toml");
    std::fs::write(&again, &printed).unwrap();
    let out = herald(&["check-config", again.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_bad_variable_stops_serve_and_is_named() {
    for (var, value, needle) in [
        (
            "HERALD_MAX_PAYLOAD",
            "big",
            "environment variable HERALD_MAX_PAYLOAD: key `max_payload`",
        ),
        (
            "HERALD_PING_INTERVALL",
            "8s",
            "environment variable HERALD_PING_INTERVALL: not a config key (did you mean HERALD_PING_INTERVAL?)",
        ),
    ] {
        let out = herald(&["serve", "--listen", "127.0.0.1:0"], &[(var, value)]);
        assert!(!out.status.success(), "{var}");
        assert!(out.stdout.is_empty(), "no ready line");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(needle), "{var}: {stderr}");
    }
}

#[tokio::test]
async fn unknown_procedures_ignore_leaves_the_invoke_unanswered_and_counts_it() {
    let dir = TempDir::new("unknown-procedures");
    let file = dir.path("herald.toml");
    std::fs::write(&file, "unknown_procedures = \"ignore\"\n").unwrap();
    let herald = Herald::start(
        &["--config", file.to_str().unwrap()],
        "warn",
        Stdio::inherit(),
    )
    .await;
    let mut ws = connect(&herald.ws_url()).await;
    for frame in [
        json!({"event": "#handshake", "data": {}, "cid": 1}),
        json!({"event": "nosuch", "data": {}, "cid": 2}),
        json!({"event": "#subscribe", "data": {"channel": "news"}, "cid": 3}),
    ] {
        ws.send(Message::text(frame.to_string())).await.unwrap();
    }
    // Frames are handled in order and an error reply to cid 2 would be sent
    // before cid 3 is read: the replies are to 1, then 3.
    let mut rids = Vec::new();
    while rids.len() < 2 {
        let msg = within("a reply", ws.next())
            .await
            .expect("open")
            .expect("read");
        let Some(text) = msg.as_text().filter(|t| !t.is_empty() && *t != "#1") else {
            continue;
        };
        let reply: Value = serde_json::from_str(text).expect("JSON");
        rids.push(reply["rid"].clone());
    }
    assert_eq!(rids, [json!(1), json!(3)]);
    let metrics = http_get(TcpStream::connect(herald.addr()).await.unwrap(), "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "herald_unknown_procedures_total 1"),
        "{metrics}"
    );
    drop(ws);
    assert_eq!(herald.stop().await, Some(0));
}
