//! The HTTP client Herald's own outbound requests share (JWKS fetches,
//! backend hooks): reqwest, pooled, over rustls with the `ring` provider.
//!
//! reqwest's default TLS would build a second crypto stack (aws-lc-rs, a C
//! build); Herald already links rustls with `ring` for `wss://`, so the
//! client gets a rustls configuration made here: `ring`, the system's root
//! certificates (`rustls-native-certs`: `/etc/ssl/certs` or
//! `SSL_CERT_FILE`), TLS 1.2 and 1.3. A machine without root certificates
//! still builds a client: plain `http://` works and `https://` fails at the
//! handshake with an unknown issuer, which the caller reports.
//!
//! Every caller builds its client once and keeps it: the client's
//! connection pool is what makes repeated requests cheap.

use std::sync::Arc;
use std::time::Duration;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// The HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub(crate) struct HttpClientError(String);

/// The rustls client configuration of Herald's outbound requests.
pub(crate) fn tls_config() -> Result<rustls::ClientConfig, HttpClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        tracing::warn!(
            errors = ?loaded.errors,
            "no system root certificates: outbound https requests will fail"
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpClientError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A client builder with Herald's TLS and pool settings, a `herald/VERSION`
/// user agent, no proxy from the environment and no redirects (a JWKS or a
/// hook URL is configured exactly; a redirect to elsewhere is an error the
/// operator should see). Callers add their timeouts and build once.
pub(crate) fn builder() -> Result<reqwest::ClientBuilder, HttpClientError> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config()?)
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_idle_timeout(POOL_IDLE))
}

/// A client with [`builder`]'s settings and `timeout` on every request
/// (connect, send, and reading the whole response).
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, HttpClientError> {
    builder()?
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| HttpClientError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn builds_and_speaks_plain_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/x", axum::routing::get(|| async { "hello" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = client(Duration::from_secs(5)).unwrap();
        let body = client
            .get(format!("http://{addr}/x"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "hello");
    }
}
