//! `herald serve --dev`: the demo page and its assets at `/`, the token
//! route signing with the server's secret, the `demo:` namespace with
//! history and presence, the `dev.dropMe` procedure; and none of it
//! without `--dev`. (The page itself is driven in a browser by
//! clients/ts/test/browser/demo.test.mjs.)

mod common;

use std::process::Stdio;

use common::{Herald, http_get, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn get(h: &Herald, path: &str) -> String {
    http_get(TcpStream::connect(h.addr()).await.expect("connect"), path).await
}

async fn post(h: &Herald, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(h.addr()).await.expect("connect");
    within("an HTTP response", async {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn dev_serves_the_page_its_assets_and_tokens() {
    let h = Herald::start(
        &["--dev", "--auth-secret", "dev-test-secret"],
        "warn",
        Stdio::inherit(),
    )
    .await;
    let page = get(&h, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html"));
    for id in ["login-name", "login", "logout", "user", "state"] {
        assert!(page.contains(&format!("id=\"{id}\"")), "element #{id}");
    }
    assert!(
        page.contains("content=\"/socketcluster/\""),
        "the WebSocket path"
    );
    for asset in [
        "/herald/dev/app.js",
        "/herald/dev/worker.js",
        "/herald/dev/style.css",
    ] {
        let r = get(&h, asset).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{asset}: {r}");
        assert!(body(&r).len() > 100, "{asset} has content");
    }

    let r = post(&h, "/herald/dev/token", r#"{"name":" ada "}"#).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let v: serde_json::Value = serde_json::from_str(body(&r)).expect("json");
    let token = v["token"].as_str().expect("a token");
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(b"dev-test-secret"),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .expect("signed with the server's secret")
    .claims;
    assert_eq!(claims["sub"], "ada");
    assert!(claims["exp"].is_u64());
    for bad in [
        r#"{"name":""}"#,
        r#"{"name":"   "}"#,
        "not json",
        r#"{"nom":"x"}"#,
    ] {
        let r = post(&h, "/herald/dev/token", bad).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{bad}: {r}");
    }
    let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(2000));
    assert!(
        post(&h, "/herald/dev/token", &long)
            .await
            .starts_with("HTTP/1.1 413")
    );

    // The token works on the socket, and demo: keeps history and presence.
    let client = herald_client::Client::builder(h.url("127.0.0.1"))
        .connect()
        .await
        .expect("connect");
    client.authenticate(token).await.expect("authenticate");
    let sub = client.subscribe("demo:lobby").await.expect("subscribe");
    assert!(sub.position().is_some(), "demo: has history");
    let mut sub = sub;
    client
        .publish(
            "demo:lobby",
            &serde_json::json!({"user": "mallory", "text": " hi "}),
        )
        .await
        .expect("publish");
    let p = within("the publication", futures_util::StreamExt::next(&mut sub))
        .await
        .expect("a publication")
        .expect("no error");
    assert_eq!(
        p.data,
        serde_json::json!({"user": "ada", "text": "hi"}),
        "the server stamps the user"
    );
    assert!(
        client
            .publish("demo:lobby", &serde_json::json!({"text": ""}))
            .await
            .is_err(),
        "an empty message is refused"
    );
    let stats = client.presence_stats("demo:lobby").await.expect("presence");
    assert_eq!((stats.clients, stats.users), (1, 1));
    let page = client
        .history("demo:lobby", herald_client::HistoryOptions::default())
        .await
        .expect("history");
    assert_eq!(page.publications.len(), 1);
    client.close().await;
    assert_eq!(h.stop().await, Some(0));
}

#[tokio::test]
async fn dev_without_a_secret_signs_with_a_random_one() {
    let h = Herald::start(&["--dev"], "warn", Stdio::null()).await;
    let r = post(&h, "/herald/dev/token", r#"{"name":"bob"}"#).await;
    let v: serde_json::Value = serde_json::from_str(body(&r)).expect("json");
    let client = herald_client::Client::builder(h.url("127.0.0.1"))
        .connect()
        .await
        .expect("connect");
    client
        .authenticate(v["token"].as_str().expect("a token"))
        .await
        .expect("the server accepts its own token");
    client.close().await;
    assert_eq!(h.stop().await, Some(0));
}

#[tokio::test]
async fn without_dev_there_is_no_page_no_token_route_and_no_demo_namespace() {
    let h = Herald::start(&["--auth-secret", "s"], "warn", Stdio::null()).await;
    assert!(get(&h, "/").await.starts_with("HTTP/1.1 404"));
    assert!(
        get(&h, "/herald/dev/app.js")
            .await
            .starts_with("HTTP/1.1 404")
    );
    let r = post(&h, "/herald/dev/token", r#"{"name":"ada"}"#).await;
    assert!(
        r.starts_with("HTTP/1.1 404") || r.starts_with("HTTP/1.1 405"),
        "{r}"
    );
    assert!(!r.contains("token"));
    let client = herald_client::Client::builder(h.url("127.0.0.1"))
        .connect()
        .await
        .expect("connect");
    let sub = client.subscribe("demo:lobby").await.expect("subscribe");
    assert!(
        sub.position().is_none(),
        "demo: is a plain channel without --dev"
    );
    assert!(
        client
            .invoke("dev.dropMe", &serde_json::json!({"seconds": 1}))
            .await
            .is_err()
    );
    client.close().await;
    assert_eq!(h.stop().await, Some(0));
}
