//! `herald serve` as a process: the ready line, a handshake over a real
//! socket, clean exits on SIGTERM and SIGINT, config errors, and the auth
//! secret from the environment.

mod common;

use std::process::Stdio;

use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::process::Command;
use tokio_websockets::Message;

/// `herald serve` with `env`, logging warnings to the test's stderr.
async fn start(args: &[&str], env: &[(&str, &str)]) -> Herald {
    Herald::start_with(args, env, "warn", Stdio::inherit()).await
}

async fn serves_then_exits_cleanly_on(signal: &str) {
    let herald = start(&[], &[]).await;
    let (mut ws, status) = handshake(&herald.ws_url(), None).await;
    assert_eq!(status["isAuthenticated"], false);
    assert_eq!(status["id"].as_str().map(str::len), Some(20));
    ws.send(Message::text(r#"{"event":"x","data":1}"#))
        .await
        .unwrap();

    herald.signal(signal);
    assert_eq!(
        close_code(&mut ws).await,
        1012,
        "sockets are told the server restarts"
    );
    assert_eq!(herald.exit_code().await, Some(0));
}

#[tokio::test]
async fn serve_prints_its_address_accepts_a_handshake_and_exits_0_on_sigterm() {
    serves_then_exits_cleanly_on("TERM").await;
}

#[tokio::test]
async fn serve_exits_0_on_sigint() {
    serves_then_exits_cleanly_on("INT").await;
}

#[tokio::test]
async fn serve_exits_0_on_a_signal_sent_right_after_the_ready_line() {
    // A supervisor may stop the server as soon as it reports ready: the
    // signal handlers must be in place by then.
    for (i, signal) in ["TERM", "INT"].iter().cycle().take(12).enumerate() {
        let herald = start(&[], &[]).await;
        herald.signal(signal);
        assert_eq!(herald.exit_code().await, Some(0), "run {i}, SIG{signal}");
    }
}

#[tokio::test]
async fn config_file_with_an_unknown_key_fails_naming_the_key() {
    let path = std::env::temp_dir().join(format!("herald-cli-test-{}.toml", std::process::id()));
    std::fs::write(&path, "ping_interval = \"1s\"\nping_intervall = \"2s\"\n").unwrap();
    let output = within(
        "herald to exit",
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .env_remove("HERALD_AUTH_SECRET")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run herald");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "accepted a bad config: {stderr}");
    assert!(stderr.contains("ping_intervall"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening"),
        "must not start"
    );
}

#[tokio::test]
async fn auth_secret_from_the_environment_verifies_tokens() {
    let secret = "cli-env-secret";
    let herald = start(&[], &[("HERALD_AUTH_SECRET", secret)]).await;
    let sign = |key: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": "env-user"}),
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };

    let (mut ws, status) = handshake(&herald.ws_url(), Some(&sign(secret))).await;
    assert_eq!(status["isAuthenticated"], true, "{status}");
    assert!(status.get("authError").is_none(), "{status}");

    let (mut ws2, status) = handshake(&herald.ws_url(), Some(&sign("another secret"))).await;
    assert_eq!(status["isAuthenticated"], false, "{status}");
    assert_eq!(status["authError"]["message"], "invalid signature");
    assert_eq!(
        next_frame(&mut ws2).await,
        json!({"event": "#removeAuthToken"})
    );

    herald.signal("TERM");
    assert_eq!(close_code(&mut ws).await, 1012);
    assert_eq!(close_code(&mut ws2).await, 1012);
    assert_eq!(herald.exit_code().await, Some(0));
}

#[tokio::test]
async fn config_file_namespaces_apply_to_the_server() {
    let path = std::env::temp_dir().join(format!("herald-cli-ns-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        r#"
[channels]
publish = "none"

[namespaces.chat]
history_size = 10
history_ttl = "1m"
recover = true
"#,
    )
    .unwrap();
    let herald = start(&["--config", path.to_str().unwrap()], &[]).await;
    let _ = std::fs::remove_file(&path);
    let (mut ws, _) = handshake(&herald.ws_url(), None).await;
    let send = |frame: Value| Message::text(frame.to_string());
    ws.send(send(
        json!({"event": "#subscribe", "data": {"channel": "chat:a"}, "cid": 2}),
    ))
    .await
    .unwrap();
    let reply = next_frame(&mut ws).await;
    assert_eq!(reply["data"]["offset"], 0, "{reply}");
    ws.send(send(
        json!({"event": "#publish", "data": {"channel": "chat:a", "data": 1}, "cid": 3}),
    ))
    .await
    .unwrap();
    let publication = next_frame(&mut ws).await;
    assert_eq!(publication["data"]["offset"], 1, "{publication}");
    assert_eq!(publication["data"]["epoch"], reply["data"]["epoch"]);
    assert_eq!(next_frame(&mut ws).await, json!({"rid": 3}));
    // [channels] publish = "none".
    ws.send(send(
        json!({"event": "#publish", "data": {"channel": "news", "data": 1}, "cid": 4}),
    ))
    .await
    .unwrap();
    let refused = next_frame(&mut ws).await;
    assert_eq!(refused["error"]["name"], "ForbiddenError", "{refused}");
    herald.signal("TERM");
    assert_eq!(close_code(&mut ws).await, 1012);
    assert_eq!(herald.exit_code().await, Some(0));
}

#[tokio::test]
async fn config_file_with_a_bad_namespace_fails_naming_it() {
    let path = std::env::temp_dir().join(format!("herald-cli-badns-{}.toml", std::process::id()));
    std::fs::write(&path, "[namespaces.chat]\nrecover = true\n").unwrap();
    let output = within(
        "herald to exit",
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .env_remove("HERALD_AUTH_SECRET")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run herald");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "accepted a bad config: {stderr}");
    assert!(
        stderr.contains("[namespaces.chat]: recover needs history"),
        "{stderr}"
    );
}

#[tokio::test]
async fn config_file_auth_audience_issuer_and_token_bound_apply() {
    let secret = "cli-aud-secret";
    let path = std::env::temp_dir().join(format!("herald-cli-aud-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "auth_secret = \"{secret}\"\nauth_audience = [\"app\", \"admin\"]\nauth_issuer = \"https://login.test\"\nmax_auth_token = 512\n"
        ),
    )
    .unwrap();
    let herald = start(&["--config", path.to_str().unwrap()], &[]).await;
    let _ = std::fs::remove_file(&path);
    let sign = |claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let iss = "https://login.test";
    let good = sign(json!({"sub": "u", "aud": "admin", "iss": iss}));
    let (mut ws, status) = handshake(&herald.ws_url(), Some(&good)).await;
    assert_eq!(status["isAuthenticated"], true, "{status}");
    for (token, message) in [
        (
            sign(json!({"sub": "u", "aud": "other", "iss": iss})),
            "jwt audience invalid",
        ),
        (
            sign(json!({"sub": "u", "aud": "app", "iss": "https://evil.test"})),
            "jwt issuer invalid",
        ),
        (
            sign(json!({"sub": "u", "aud": "app", "iss": iss, "pad": "x".repeat(600)})),
            "jwt too long",
        ),
    ] {
        let (mut refused, status) = handshake(&herald.ws_url(), Some(&token)).await;
        assert_eq!(status["isAuthenticated"], false, "{status}");
        let got = status["authError"]["message"].as_str().unwrap_or_default();
        assert!(got.starts_with(message), "{status}");
        assert_eq!(
            next_frame(&mut refused).await,
            json!({"event": "#removeAuthToken"})
        );
    }
    herald.signal("TERM");
    assert_eq!(close_code(&mut ws).await, 1012);
    assert_eq!(herald.exit_code().await, Some(0));
}
