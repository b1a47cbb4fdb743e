//! Where the signed auth token lives between connections, and reading its
//! claims.
//!
//! The server hands the client a signed JWT (`#setAuthToken`); the client
//! sends it back in every `#handshake` so that a reconnect is authenticated
//! again without user action. A long-running service keeps it in memory
//! ([`MemoryTokenStore`], the default); a CLI keeps it on disk between runs
//! ([`FileTokenStore`]). Anything else (a keychain, a secret manager)
//! implements [`TokenStore`].
//!
//! The client never verifies a token: only the server holds the key.
//! [`decode_claims`] merely base64url-decodes the payload so that a program
//! can show who it is logged in as, like socketcluster-client's
//! `getAuthToken()`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde_json::Value;

/// Storage for the signed auth token.
///
/// The client calls these methods from its connection task: `load` before
/// each handshake, `save` when the server issues a token or
/// [`crate::Client::authenticate`] succeeds, `remove` when the server revokes
/// it, the handshake reports it as bad, or
/// [`crate::Client::deauthenticate`] is called. They should be quick (a small
/// file or a map); errors are logged and otherwise ignored, as a failed save
/// must not cost the connection.
pub trait TokenStore: Send + Sync + 'static {
    /// The stored token, `None` when there is none.
    fn load(&self) -> io::Result<Option<String>>;
    /// Replaces the stored token.
    fn save(&self, token: &str) -> io::Result<()>;
    /// Forgets the token. Removing an absent token is not an error.
    fn remove(&self) -> io::Result<()>;
}

/// Keeps the token in memory: it survives reconnects, not restarts. The
/// default store.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    token: Mutex<Option<String>>,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that starts with `token` (e.g. a token obtained out of band).
    pub fn with_token(token: impl Into<String>) -> Self {
        Self {
            token: Mutex::new(Some(token.into())),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TokenStore for MemoryTokenStore {
    fn load(&self) -> io::Result<Option<String>> {
        Ok(self.slot().clone())
    }

    fn save(&self, token: &str) -> io::Result<()> {
        *self.slot() = Some(token.to_owned());
        Ok(())
    }

    fn remove(&self) -> io::Result<()> {
        *self.slot() = None;
        Ok(())
    }
}

/// Keeps the token in a file, for command-line tools that log in once and
/// reuse the token on later runs.
///
/// Saving writes a temporary file next to the target and renames it over the
/// target, so a reader never sees a half-written token and a crash leaves
/// either the old or the new token. On Unix the file is created with mode
/// 0600 (owner read/write only). Missing parent directories are created.
#[derive(Debug, Clone)]
pub struct FileTokenStore {
    path: PathBuf,
}

impl FileTokenStore {
    /// A store backed by the file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn temp_path(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "token".to_owned());
        let unique: u64 = rand::random();
        self.path
            .with_file_name(format!(".{name}.{}.{unique:016x}.tmp", std::process::id()))
    }
}

impl TokenStore for FileTokenStore {
    fn load(&self) -> io::Result<Option<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let token = text.trim();
                Ok((!token.is_empty()).then(|| token.to_owned()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, token: &str) -> io::Result<()> {
        use std::io::Write as _;

        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let temp = self.temp_path();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let result = (|| {
            let mut file = options.open(&temp)?;
            file.write_all(token.as_bytes())?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&temp, &self.path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    fn remove(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The claims (payload) of a JWT, decoded but NOT verified: the middle part
/// base64url-decoded and parsed as JSON. `None` when the token does not have
/// that shape.
pub fn decode_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?.trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .or_else(|_| STANDARD_NO_PAD.decode(payload))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_round_trip() {
        let s = MemoryTokenStore::new();
        assert_eq!(s.load().unwrap(), None);
        s.save("a.b.c").unwrap();
        assert_eq!(s.load().unwrap().as_deref(), Some("a.b.c"));
        s.remove().unwrap();
        s.remove().unwrap();
        assert_eq!(s.load().unwrap(), None);
        let s = MemoryTokenStore::with_token("t");
        assert_eq!(s.load().unwrap().as_deref(), Some("t"));
    }

    #[test]
    fn claims_of_a_real_token() {
        // From the capture of socketcluster-server 20.
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImlhdCI6MTc5NTU2NjM1NiwiZXhwIjoxNzk1NjUyNzU2fQ.qVIxGntNt0vJq8ocPg8_-ucXZ-FOU_zj6ThG5GA4Rck";
        let claims = decode_claims(token).unwrap();
        assert_eq!(claims["sub"], "u1");
        assert_eq!(claims["exp"], 1_795_652_756u64);
    }

    #[test]
    fn claims_of_garbage_are_none() {
        for t in ["", "garbage", "a.b", "a.!!!.c", "a.bm90IGpzb24.c"] {
            assert_eq!(decode_claims(t), None, "{t}");
        }
        // Padded and url-unsafe alphabets are tolerated.
        let payload = base64::engine::general_purpose::STANDARD.encode(br#"{"s":"??>"}"#);
        assert_eq!(
            decode_claims(&format!("h.{payload}.s")).unwrap()["s"],
            "??>"
        );
    }
}
