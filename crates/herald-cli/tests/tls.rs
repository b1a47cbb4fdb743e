//! `herald serve --tls-cert --tls-key` as a process, with a self-signed
//! certificate made by the test: `wss://` from the Rust client, the status
//! routes and `/metrics` over https, a client that does not trust the
//! certificate refused, and the flags checked.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{Herald, TempDir, http_get, within};
use futures_util::StreamExt;
use herald_client::{Client, ReconnectPolicy, TlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::net::TcpStream;

/// A self-signed certificate for localhost and 127.0.0.1, written to
/// `dir`; returns (cert path, key path, cert PEM).
fn certificate(dir: &TempDir) -> (String, String, String) {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).expect("a certificate");
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let pem = certified.cert.pem();
    std::fs::write(&cert, &pem).expect("write cert.pem");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key.pem");
    (cert.display().to_string(), key.display().to_string(), pem)
}

async fn start_tls(dir: &TempDir) -> (Herald, String) {
    let (cert, key, pem) = certificate(dir);
    let herald = Herald::start(
        &["--tls-cert", &cert, "--tls-key", &key],
        "warn",
        Stdio::inherit(),
    )
    .await;
    assert_eq!(herald.scheme, "wss", "the ready line names wss://");
    (herald, pem)
}

/// `GET path` over https, trusting `pem`.
async fn https_get(herald: &Herald, pem: &str, path: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.expect("a certificate")).expect("a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(herald.addr()).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("a name");
    let tls = within("the TLS handshake", connector.connect(name, tcp))
        .await
        .expect("TLS handshake");
    http_get(tls, path).await
}

#[tokio::test]
async fn wss_from_the_rust_client_and_https_status_and_metrics() {
    let dir = TempDir::new("tls");
    let (herald, pem) = start_tls(&dir).await;
    let tls = TlsConfig::empty()
        .add_root_pem(pem.as_bytes())
        .expect("the certificate as a root");
    for host in ["localhost", "127.0.0.1"] {
        let client = within(
            "a wss:// connection",
            Client::builder(herald.url(host)).tls(tls.clone()).connect(),
        )
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", herald.url(host)));
        let mut news = client.subscribe("news").await.expect("subscribe");
        client
            .publish("news", &json!({"over": "tls"}))
            .await
            .expect("publish");
        let got = within("the publication", news.next())
            .await
            .expect("a publication")
            .expect("not a subscription error");
        assert_eq!(
            got.data_as::<serde_json::Value>().unwrap(),
            json!({"over": "tls"})
        );
        client.close().await;
    }
    let health = https_get(&herald, &pem, "/herald/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = https_get(&herald, &pem, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.lines().any(|l| l == "herald_handshakes_total 2"),
        "{metrics}"
    );
    assert_eq!(herald.stop().await, Some(0));
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let dir = TempDir::new("tls-untrusted");
    let (herald, pem) = start_tls(&dir).await;
    let refused = within(
        "the refused connection",
        Client::builder(herald.url("localhost"))
            .tls(TlsConfig::empty())
            .reconnect(ReconnectPolicy {
                enabled: false,
                ..ReconnectPolicy::default()
            })
            .connect_timeout(Duration::from_secs(5))
            .connect(),
    )
    .await;
    let err = refused.expect_err("an untrusted certificate");
    assert!(
        matches!(err, herald_client::Error::BadConnection { .. }),
        "{err}"
    );
    // The server counts the failed handshake, and keeps serving.
    let metrics = within("the failed handshake to be counted", async {
        loop {
            let page = https_get(&herald, &pem, "/metrics").await;
            if page
                .lines()
                .any(|l| l == "herald_handshakes_refused_total{reason=\"tls\"} 1")
            {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(metrics.starts_with("HTTP/1.1 200"));
    assert_eq!(herald.stop().await, Some(0));
}

#[tokio::test]
async fn a_certificate_needs_its_key_and_readable_files() {
    let run = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .output()
            .expect("run herald")
    };
    let out = run(&["--tls-cert", "/nonexistent/cert.pem"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs --tls-key"), "{stderr}");
    assert!(out.stdout.is_empty(), "no ready line");

    let out = run(&[
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot load the TLS certificate"),
        "{stderr}"
    );
    assert!(stderr.contains("/nonexistent/cert.pem"), "{stderr}");

    let dir = TempDir::new("tls-config");
    let (cert, key, _) = certificate(&dir);
    let config = dir.path("herald.toml");
    std::fs::write(&config, format!("tls_cert = {cert:?}\ntls_key = {key:?}\n"))
        .expect("write the config");
    let herald = Herald::start(
        &["--config", &config.display().to_string()],
        "warn",
        Stdio::inherit(),
    )
    .await;
    assert_eq!(
        herald.scheme, "wss",
        "tls_cert and tls_key from the config file"
    );
    assert_eq!(herald.stop().await, Some(0));
}
