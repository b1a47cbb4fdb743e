//! The auth keys of a config file (`[[auth_keys]]`, `auth_secret`), the
//! JWKS settings (`auth_jwks_*`) and the clock leeway, made into the
//! server's [`herald::AuthEngine`].
//!
//! Keys are read when the configuration is checked (`check-config` loads
//! every PEM and refuses a pair that does not match), and again when the
//! server starts. A PEM is given inline (the text, starting with
//! `-----BEGIN`) or as the path of a file. `auth_secret` alone is the
//! classic HS256 secret; with `[[auth_keys]]` it is refused as ambiguous
//! (an HS256 key there is `{ algorithm = "HS256", secret = "..." }`).

use std::time::Duration;

use herald::auth::Algorithm;
use herald::{AuthEngine, JwksOptions, Key};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::FileConfig;

/// One `[[auth_keys]]` entry.
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthKeySection {
    /// The key's id: a token's `kid` selects it, and tokens it signs name
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `HS256`, `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`,
    /// `PS384`, `PS512`, `ES256`, `ES384` or `EdDSA`.
    #[serde(default, with = "algorithm", skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// The HMAC secret (HS* only).
    #[serde(
        default,
        with = "super::de::secret",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret: Option<String>,
    /// A PEM public key, inline or a file path (verification only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// A PEM private key, inline or a file path: the key can sign (its
    /// public half is derived, or checked against `public_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

/// An algorithm by its JOSE name, exactly as spelled.
pub mod algorithm {
    use super::*;

    /// Reads an algorithm name.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Algorithm>, D::Error> {
        let name = String::deserialize(d)?;
        herald::auth::keys::parse_algorithm(&name)
            .map(Some)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown algorithm {name:?}: expected one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
                ))
            })
    }

    /// Writes its name.
    pub fn serialize<S: Serializer>(v: &Option<Algorithm>, s: S) -> Result<S::Ok, S::Error> {
        v.map(herald::auth::keys::algorithm_name).serialize(s)
    }
}

/// A problem with the auth settings: the key it is about, and what.
pub type AuthProblem = (&'static str, String);

/// The PEM of `value`: the text itself, or the contents of the file it
/// names.
fn pem(value: &str) -> Result<Vec<u8>, String> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    std::fs::read(value).map_err(|e| format!("cannot read {value}: {e}"))
}

impl AuthKeySection {
    /// The key this entry describes.
    pub fn key(&self) -> Result<Key, String> {
        let algorithm = self
            .algorithm
            .ok_or("needs an algorithm (HS256, RS256, ES256, EdDSA, ...)")?;
        let hmac = matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        );
        let key = match (&self.secret, &self.public_key, &self.private_key) {
            (Some(secret), None, None) if hmac => Key::secret(algorithm, secret),
            (None, Some(public), None) if !hmac => Key::public_pem(algorithm, &pem(public)?),
            (None, None, Some(private)) if !hmac => Key::private_pem(algorithm, &pem(private)?),
            (None, Some(public), Some(private)) if !hmac => {
                Key::pem_pair(algorithm, &pem(public)?, &pem(private)?)
            }
            _ if hmac => return Err("an HS* key takes a secret (and no PEM)".into()),
            _ => {
                return Err(
                    "an asymmetric key takes a public_key, a private_key or both (and no secret)"
                        .into(),
                );
            }
        }
        .map_err(|e| e.to_string())?;
        Ok(match &self.id {
            Some(id) => key.with_id(id.clone()),
            None => key,
        })
    }

    fn describe(&self, index: usize) -> String {
        match &self.id {
            Some(id) => format!("auth_keys[{index}] (id {id:?})"),
            None => format!("auth_keys[{index}]"),
        }
    }
}

/// The keys and JWKS of a run, as configured (loaded into an engine by
/// [`AuthSettings::engine`]).
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// `[[auth_keys]]`.
    pub keys: Vec<AuthKeySection>,
    /// `auth_jwks_url` and its timings.
    pub jwks: Option<JwksOptions>,
}

impl AuthSettings {
    /// The auth settings of `file`, checked for what involves several
    /// keys (every problem, each with its key).
    pub fn from_file(file: &FileConfig) -> Result<Self, Vec<AuthProblem>> {
        let mut problems = Vec::new();
        let keys = file.auth_keys.clone().unwrap_or_default();
        if !keys.is_empty() && file.auth_secret.is_some() {
            problems.push((
                "auth_secret",
                "set either auth_secret or auth_keys (an HS256 key there is { algorithm = \"HS256\", secret = \"...\" })".to_owned(),
            ));
        }
        let jwks = file.auth_jwks_url.as_ref().map(|url| {
            let mut o = JwksOptions::new(url.clone());
            if let Some(d) = file.auth_jwks_refresh {
                o = o.refresh(d);
            }
            if let Some(d) = file.auth_jwks_min_refresh {
                o = o.min_refresh(d);
            }
            if let Some(d) = file.auth_jwks_timeout {
                o = o.timeout(d);
            }
            o
        });
        if problems.is_empty() {
            Ok(Self { keys, jwks })
        } else {
            Err(problems)
        }
    }

    /// Loads the keys (reading PEM files) into the engine they describe.
    /// `None`: no key and no JWKS, so the server's HS256 engine (with
    /// `auth_secret`, or a random secret) applies.
    pub fn engine(&self) -> Result<Option<AuthEngine>, Vec<AuthProblem>> {
        let mut problems = Vec::new();
        let mut loaded = Vec::new();
        for (i, section) in self.keys.iter().enumerate() {
            match section.key() {
                Ok(key) => loaded.push(key),
                Err(e) => problems.push(("auth_keys", format!("{}: {e}", section.describe(i)))),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let jwks = self.jwks.clone();
        let built = match (loaded.is_empty(), jwks) {
            (true, None) => return Ok(None),
            (false, None) => {
                AuthEngine::from_keys(loaded).map_err(|e| ("auth_keys", e.to_string()))
            }
            (true, Some(o)) => AuthEngine::jwks(o).map_err(|e| ("auth_jwks_url", e.to_string())),
            (false, Some(o)) => AuthEngine::from_keys(loaded)
                .map_err(|e| ("auth_keys", e.to_string()))
                .and_then(|e| e.with_jwks(o).map_err(|e| ("auth_jwks_url", e.to_string()))),
        };
        built.map(Some).map_err(|p| vec![p])
    }
}

/// Checks the auth settings of `file` and builds their engine (see
/// [`AuthSettings::engine`]).
pub fn engine(file: &FileConfig) -> Result<Option<AuthEngine>, Vec<AuthProblem>> {
    AuthSettings::from_file(file)?.engine()
}

/// Fills in the defaults of the auth keys that have one, for
/// `print-config` (the JWKS timings show their defaults without a URL too:
/// they apply once one is set).
pub fn show_defaults(file: &mut FileConfig, settings: &super::ServeSettings) {
    use herald::auth::jwks::{
        DEFAULT_JWKS_MIN_REFRESH, DEFAULT_JWKS_REFRESH, DEFAULT_JWKS_TIMEOUT,
    };
    file.auth_leeway = Some(settings.auth_leeway);
    file.auth_jwks_refresh.get_or_insert(DEFAULT_JWKS_REFRESH);
    file.auth_jwks_min_refresh
        .get_or_insert(DEFAULT_JWKS_MIN_REFRESH);
    file.auth_jwks_timeout.get_or_insert(DEFAULT_JWKS_TIMEOUT);
}

/// The clock leeway (`auth_leeway`, default none).
pub fn leeway(file: &FileConfig) -> Duration {
    file.auth_leeway.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PRIVATE: &str = include_str!("../../../herald/tests/testdata/keys/rsa-private.pem");
    const RSA2_PRIVATE: &str = include_str!("../../../herald/tests/testdata/keys/rsa2-private.pem");
    const RSA_PUBLIC: &str = include_str!("../../../herald/tests/testdata/keys/rsa-public.pem");

    fn file(text: &str) -> FileConfig {
        FileConfig::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The errors of checking `text` as a config file.
    fn problems(text: &str) -> String {
        FileConfig::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn keys_load_inline_and_from_files() {
        let dir = std::env::temp_dir().join(format!("herald-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("public.pem");
        std::fs::write(&path, RSA_PUBLIC).unwrap();
        let text = format!(
            r#"
            [[auth_keys]]
            id = "2026"
            algorithm = "RS256"
            private_key = """{RSA_PRIVATE}"""

            [[auth_keys]]
            id = "2025"
            algorithm = "RS256"
            public_key = "{}"

            [[auth_keys]]
            id = "hs"
            algorithm = "HS512"
            secret = "s3cret"
            "#,
            path.display()
        );
        let engine = engine(&file(&text)).unwrap().expect("an engine");
        assert_eq!(engine.signing_algorithm(), Some(Algorithm::RS256));
        let t = engine
            .sign(&serde_json::Map::new(), Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&t).unwrap().kid.as_deref(),
            Some("2026")
        );
        assert!(engine.verify_offline(&t).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(
            problems("[[auth_keys]]\nalgorithm = \"RS256\"\nprivate_key = \"/nonexistent.pem\"\n")
                .contains(
                    "<config>:1: key `auth_keys`: auth_keys[0]: cannot read /nonexistent.pem"
                )
        );
        assert!(problems("[[auth_keys]]\nalgorithm = \"HS256\"\n").contains("takes a secret"));
        assert!(
            problems("[[auth_keys]]\nid = \"x\"\nalgorithm = \"RS256\"\nsecret = \"s\"\n")
                .contains("auth_keys[0] (id \"x\"): an asymmetric key takes")
        );
        assert!(problems("[[auth_keys]]\nsecret = \"s\"\n").contains("needs an algorithm"));
        let mismatch = format!(
            "[[auth_keys]]\nalgorithm = \"RS256\"\npublic_key = \"\"\"{RSA_PUBLIC}\"\"\"\nprivate_key = \"\"\"{RSA2_PRIVATE}\"\"\"\n"
        );
        assert!(problems(&mismatch).contains("not one pair"));
        let dup = "[[auth_keys]]\nid = \"a\"\nalgorithm = \"HS256\"\nsecret = \"1\"\n[[auth_keys]]\nid = \"a\"\nalgorithm = \"HS384\"\nsecret = \"2\"\n";
        assert!(problems(dup).contains("two keys have the id \"a\""));
        assert!(
            problems("auth_secret = \"s\"\n[[auth_keys]]\nalgorithm = \"HS256\"\nsecret = \"t\"\n")
                .contains("key `auth_secret`: set either auth_secret or auth_keys")
        );
        assert!(
            problems("auth_jwks_url = \"https://x.test/jwks\"\nauth_jwks_min_refresh = \"2h\"\n")
                .contains("above the refresh interval")
        );
        assert!(problems("auth_jwks_url = \"ftp://x.test/\"\n").contains("auth_jwks_url"));
    }

    #[test]
    fn algorithms_are_checked_where_they_are_written() {
        let e = FileConfig::parse("[[auth_keys]]\nalgorithm = \"none\"\nsecret = \"s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown algorithm \"none\""), "{e}");
        assert!(e.contains(":2"), "{e}");
        let e = FileConfig::parse("[[auth_keys]]\nalgorithm = \"HS256\"\nkid = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kid"), "{e}");
    }

    #[test]
    fn nothing_configured_is_the_classic_secret() {
        assert!(engine(&file("auth_secret = \"s\"\n")).unwrap().is_none());
        assert!(engine(&file("")).unwrap().is_none());
        let jwks = engine(&file(
            "auth_jwks_url = \"https://login.example/jwks\"\nauth_leeway = \"5s\"\n",
        ))
        .unwrap()
        .expect("a JWKS engine");
        assert_eq!(jwks.signing_algorithm(), None);
        assert_eq!(
            jwks.jwks_options().map(JwksOptions::url),
            Some("https://login.example/jwks")
        );
        assert_eq!(
            leeway(&file("auth_leeway = \"5s\"\n")),
            Duration::from_secs(5)
        );
        assert_eq!(leeway(&file("")), Duration::ZERO);
    }
}
