//! TLS on the server's own port: `wss://`, and the status routes and
//! `/metrics` over `https://`.
//!
//! rustls (with the `ring` provider, which the workspace already builds)
//! terminates TLS; `tls-listener` runs the handshakes of many connections
//! at once, each bounded in time, so a client that stalls its handshake
//! holds up nobody else's. [`TlsIncoming`] puts that listener under
//! `axum::serve` and turns a failed handshake into a debug line and a
//! metric rather than an error-level log per port scanner.
//!
//! A deployment behind a TLS-terminating load balancer needs none of this;
//! see docs/operations.md.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tls_listener::rustls::TlsAcceptor;
use tls_listener::rustls::server::TlsStream;
use tokio::net::{TcpListener, TcpStream};

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The certificate PEM holds no certificate (or an unreadable one).
    #[error("no certificate in {0}")]
    NoCertificate(String),
    /// The key PEM holds no private key (PKCS#8, PKCS#1 or SEC1).
    #[error("no private key in {0}")]
    NoKey(String),
    /// rustls refused the certificate and key (a key that does not match
    /// the certificate, an unsupported key type...).
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A server certificate chain and its key, ready for
/// [`crate::Server::serve_tls`].
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

impl TlsConfig {
    /// Reads a PEM certificate chain (the server's certificate first) and a
    /// PEM private key from files.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let (cert, key) = (cert.as_ref(), key.as_ref());
        Self::build(
            &read(cert)?,
            &read(key)?,
            &cert.display().to_string(),
            &key.display().to_string(),
        )
    }

    /// The same from PEM text in memory.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsConfig, TlsError> {
        Self::build(cert_pem, key_pem, "the certificate PEM", "the key PEM")
    }

    /// A rustls configuration of the application's own (client
    /// certificates, a certificate resolver...). It must offer ALPN
    /// `http/1.1` or none.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> TlsConfig {
        TlsConfig { config }
    }

    fn build(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert_name: &str,
        key_name: &str,
    ) -> Result<TlsConfig, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|_| TlsError::NoCertificate(cert_name.to_owned()))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(cert_name.to_owned()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| TlsError::NoKey(key_name.to_owned()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        // The HTTP server speaks HTTP/1.1 only (the WebSocket upgrade).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig {
            config: Arc::new(config),
        })
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }
}

/// Connections accepted on a TCP listener, each after its TLS handshake:
/// an `axum::serve::Listener`.
pub(crate) struct TlsIncoming {
    inner: tls_listener::TlsListener<TcpListener, TlsAcceptor>,
}

impl TlsIncoming {
    /// Handshakes run concurrently, each given at most `handshake_timeout`.
    pub(crate) fn new(listener: TcpListener, tls: &TlsConfig, handshake_timeout: Duration) -> Self {
        let inner = tls_listener::builder(tls.acceptor())
            .handshake_timeout(handshake_timeout)
            .listen(listener);
        Self { inner }
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok(accepted) => return accepted,
                Err(tls_listener::Error::ListenerError(e)) => accept_error(e).await,
                Err(e) => {
                    crate::metrics::handshake_refused(crate::metrics::Refusal::Tls);
                    tracing::debug!(error = %e, "TLS handshake failed");
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.listener().local_addr()
    }
}

/// What axum's own TCP listener does with an accept error: a connection
/// error is the peer's problem; anything else (out of file descriptors)
/// is logged and retried after a pause.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_without_a_certificate_or_key_is_refused_by_name() {
        let err = TlsConfig::from_pem(b"nothing here", b"").unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate(_)), "{err}");
        let err =
            TlsConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
