//! `herald serve` as a process: the ready line, a handshake over a real
//! socket, clean exits on SIGTERM and SIGINT, config errors, and the auth
//! secret from the environment.

use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

const BIN: &str = env!("CARGO_BIN_EXE_herald");
const STEP: Duration = Duration::from_secs(15);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(STEP, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP:?} waiting for {what}"),
    }
}

/// A running `herald serve` and the URL from its ready line.
struct Herald {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    url: String,
}

impl Herald {
    /// Starts `herald serve --listen 127.0.0.1:0 ARGS` and reads its ready line.
    async fn start(args: &[&str], env: &[(&str, &str)]) -> Herald {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("HERALD_AUTH_SECRET")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn herald");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = within("the ready line", stdout.next_line())
            .await
            .expect("read stdout")
            .expect("herald printed nothing");
        let port = line
            .strip_prefix("herald listening on ws://127.0.0.1:")
            .and_then(|rest| rest.strip_suffix("/socketcluster/"))
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        let port: u16 = port
            .parse()
            .unwrap_or_else(|_| panic!("bad port in {line:?}"));
        assert_ne!(port, 0, "the line names the bound port");
        Herald {
            child,
            stdout,
            url: format!("ws://127.0.0.1:{port}/socketcluster/"),
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("herald still running");
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits for the exit; asserts nothing but the ready line was printed.
    async fn exit_code(mut self) -> Option<i32> {
        let status = within("herald to exit", self.child.wait())
            .await
            .expect("wait for herald");
        let rest = within("stdout to end", self.stdout.next_line())
            .await
            .expect("read stdout");
        assert_eq!(rest, None, "herald printed more than its ready line");
        status.code()
    }
}

/// Connects and handshakes; returns the socket and the reply's data.
async fn handshake(url: &str, token: Option<&str>) -> (Ws, Value) {
    let (mut ws, _) = within(
        "the WebSocket upgrade",
        ClientBuilder::from_uri(url.parse().unwrap()).connect(),
    )
    .await
    .expect("connect to herald");
    let frame = json!({"event": "#handshake", "data": {"authToken": token}, "cid": 1});
    ws.send(Message::text(frame.to_string())).await.unwrap();
    let reply = next_frame(&mut ws).await;
    assert_eq!(reply["rid"], 1, "{reply}");
    (ws, reply["data"].clone())
}

/// The next text frame that is not a ping.
async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let msg = within("a frame", ws.next())
            .await
            .expect("socket open")
            .expect("read frame");
        match msg.as_text() {
            Some("") => continue,
            Some(text) => return serde_json::from_str(text).expect("JSON frame"),
            None => panic!("unexpected message {msg:?}"),
        }
    }
}

/// The close code the server sends.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        let msg = within("the close frame", ws.next())
            .await
            .expect("a close frame before the end")
            .expect("read");
        if let Some((code, _)) = msg.as_close() {
            // Poll to the end so that the close echo goes out.
            while let Some(Ok(_)) = within("the end of the stream", ws.next()).await {}
            return code.into();
        }
    }
}

async fn serves_then_exits_cleanly_on(signal: &str) {
    let herald = Herald::start(&[], &[]).await;
    let (mut ws, status) = handshake(&herald.url, None).await;
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
        let herald = Herald::start(&[], &[]).await;
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
    let herald = Herald::start(&[], &[("HERALD_AUTH_SECRET", secret)]).await;
    let sign = |key: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": "env-user"}),
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };

    let (mut ws, status) = handshake(&herald.url, Some(&sign(secret))).await;
    assert_eq!(status["isAuthenticated"], true, "{status}");
    assert!(status.get("authError").is_none(), "{status}");

    let (mut ws2, status) = handshake(&herald.url, Some(&sign("another secret"))).await;
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
    let herald = Herald::start(&["--config", path.to_str().unwrap()], &[]).await;
    let _ = std::fs::remove_file(&path);
    let (mut ws, _) = handshake(&herald.url, None).await;
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
    let herald = Herald::start(&["--config", path.to_str().unwrap()], &[]).await;
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
    let (mut ws, status) = handshake(&herald.url, Some(&good)).await;
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
        let (mut refused, status) = handshake(&herald.url, Some(&token)).await;
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
