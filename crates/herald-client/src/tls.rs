//! TLS for `wss://` URLs: which servers the client trusts.
//!
//! rustls (with the `ring` provider) does the TLS, through
//! tokio-websockets' rustls connector. By default the client trusts the
//! system's root certificates (`rustls-native-certs`: `/etc/ssl/certs`, or
//! `SSL_CERT_FILE`); a private CA or a self-signed server certificate is
//! added with [`TlsConfig::add_root_pem`], and anything else rustls can do
//! (client certificates, pinning) comes in with [`TlsConfig::from_rustls`].

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_websockets::Connector;

use crate::error::{Error, Result};

/// The TLS settings of a client (see [`crate::ClientBuilder::tls`]).
#[derive(Clone)]
pub struct TlsConfig {
    roots: RootCertStore,
    custom: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("roots", &self.roots.len())
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

impl TlsConfig {
    /// Trusts the system's root certificates. Fails when none can be
    /// loaded.
    pub fn native_roots() -> Result<TlsConfig> {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (_added, _ignored) = roots.add_parsable_certificates(loaded.certs);
        if roots.is_empty() {
            let why = loaded
                .errors
                .first()
                .map_or_else(|| "none found".to_owned(), ToString::to_string);
            return Err(Error::Tls(format!(
                "no system root certificates ({why}); add roots with TlsConfig::add_root_pem"
            )));
        }
        Ok(TlsConfig {
            roots,
            custom: None,
        })
    }

    /// Trusts no certificate yet: add the ones to trust with
    /// [`TlsConfig::add_root_pem`] (a private CA, a self-signed server).
    pub fn empty() -> TlsConfig {
        TlsConfig {
            roots: RootCertStore::empty(),
            custom: None,
        }
    }

    /// Also trusts the certificates of a PEM text (one or more `CERTIFICATE`
    /// blocks). Fails when it holds none, or one rustls cannot use as a
    /// root.
    pub fn add_root_pem(mut self, pem: &[u8]) -> Result<TlsConfig> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Tls(format!("unreadable PEM: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Tls("no certificate in the PEM".to_owned()));
        }
        for cert in certs {
            self.roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("unusable root certificate: {e}")))?;
        }
        Ok(self)
    }

    /// A rustls configuration of the caller's own; the roots of this value
    /// are then ignored.
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> TlsConfig {
        TlsConfig {
            roots: RootCertStore::empty(),
            custom: Some(config),
        }
    }

    /// The connector tokio-websockets wraps `wss://` streams with.
    pub(crate) fn connector(&self) -> Result<Connector> {
        let config = match &self.custom {
            Some(c) => c.clone(),
            None => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| Error::Tls(e.to_string()))?
                    .with_root_certificates(self.roots.clone())
                    .with_no_client_auth();
                Arc::new(config)
            }
        };
        Ok(Connector::Rustls(tokio_rustls::TlsConnector::from(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_without_certificates_is_refused() {
        let err = TlsConfig::empty().add_root_pem(b"not a pem").unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err}");
    }

    #[test]
    fn an_empty_config_still_makes_a_connector() {
        assert!(matches!(
            TlsConfig::empty().connector(),
            Ok(Connector::Rustls(_))
        ));
    }
}
