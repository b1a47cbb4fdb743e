//! `herald print-config`: the effective configuration (defaults, file,
//! environment and flags merged) as TOML, with secrets redacted.
//!
//! A value is redacted when its key names a secret: the key is one of
//! [`SECRET_WORDS`] or ends with `_` and one of them (`auth_secret`,
//! `api_key`, `hooks.secret`, `jwt_private_key`, ...); a string holding a
//! PEM private key is redacted whatever its key; and the password of a URL
//! (`redis://user:pass@host`) is. A new secret key needs only a name that
//! says so. The output is itself a valid config file.

use super::FileConfig;
use super::layer::merge;
use super::resolve::Resolved;

/// Words that make a key a secret (the whole key, or its last `_` words).
pub const SECRET_WORDS: &[&str] = &[
    "secret",
    "secrets",
    "password",
    "api_key",
    "api_keys",
    "private_key",
    "private_keys",
];

/// What a redacted value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// The effective configuration of `resolved` as TOML, secrets redacted.
pub fn effective_toml(resolved: &Resolved) -> String {
    let mut table = effective(resolved);
    redact(&mut table);
    let body = toml::to_string(&table).expect("a config serializes as TOML");
    format!(
        "# The effective configuration of herald serve (defaults, config file, HERALD_ variables\n\
         # and flags merged); secrets are redacted. Keys not shown are not set (see\n\
         # docs/configuration.md for what that means for each).\n\n{body}"
    )
}

/// Every key with its effective value: what the layers set, over the
/// defaults the run uses.
pub fn effective(resolved: &Resolved) -> toml::Table {
    let s = &resolved.settings;
    let mut file = resolved.file.clone();
    file.set_from(&s.config);
    file.listen = Some(s.listen);
    file.broker = Some(s.broker.clone());
    file.log_format = Some(s.log_format);
    file.dev = Some(s.dev);
    file.workers = Some(s.workers);
    super::auth::show_defaults(&mut file, s);
    file.max_auth_token = Some(
        s.max_auth_token
            .unwrap_or(herald::auth::DEFAULT_MAX_TOKEN_LEN),
    );
    let mut table = resolved.layer.table.clone();
    merge(&mut table, to_table(&file));
    table
}

/// The defaults of every key that has one, as `print-config` shows them
/// with nothing set (`namespaces.NAME` holds the options of a namespace
/// that sets none).
pub fn defaults() -> toml::Table {
    let resolved = super::resolve::load_layers(None, [], Default::default())
        .expect("the defaults are a valid configuration");
    let mut table = effective(&resolved);
    let mut ns = super::NamespaceSection::default();
    ns.set_options(&herald::ChannelOptions::default());
    let mut namespaces = toml::Table::new();
    namespaces.insert(
        super::keys::ANY_NAME.to_owned(),
        toml::Value::Table(toml::Table::try_from(&ns).expect("options serialize")),
    );
    table.insert("namespaces".into(), toml::Value::Table(namespaces));
    table
}

fn to_table(file: &FileConfig) -> toml::Table {
    toml::Table::try_from(file).expect("a config serializes as TOML")
}

/// Whether the key `name` holds a secret.
pub fn is_secret(name: &str) -> bool {
    SECRET_WORDS
        .iter()
        .any(|w| name == *w || name.ends_with(&format!("_{w}")))
}

/// Redacts the secrets of `table` in place.
pub fn redact(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        if is_secret(key) {
            hide(value);
        } else {
            redact_value(value);
        }
    }
}

fn redact_value(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => redact(t),
        toml::Value::Array(items) => items.iter_mut().for_each(redact_value),
        toml::Value::String(s) => {
            if s.contains("-----BEGIN") && s.contains("PRIVATE KEY") {
                *s = REDACTED.to_owned();
            } else {
                *s = without_url_passwords(s);
            }
        }
        _ => {}
    }
}

/// Every string under a secret key becomes [`REDACTED`] (numbers and
/// booleans say nothing secret).
fn hide(value: &mut toml::Value) {
    match value {
        toml::Value::String(s) => *s = REDACTED.to_owned(),
        toml::Value::Array(items) => items.iter_mut().for_each(hide),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| hide(v)),
        _ => {}
    }
}

/// `scheme://user:password@host` with the password redacted, for every URL
/// of a comma-separated list.
fn without_url_passwords(s: &str) -> String {
    s.split(',')
        .map(|url| {
            let Some(start) = url.find("://").map(|i| i + 3) else {
                return url.to_owned();
            };
            let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
            let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else {
                return url.to_owned();
            };
            let userinfo = &url[start..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') || !userinfo.is_empty() && user.is_empty() {
                format!("{}{user}:{REDACTED}{}", &url[..start], &url[at..])
            } else {
                url.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_private_keys_and_url_passwords_are_redacted() {
        let mut t: toml::Table = toml::from_str(
            r#"
            auth_secret = "s3"
            api_key = "k"
            max_auth_token = 8192
            broker = "redis://:pw@10.0.0.1:6379,redis://u:pw2@h:1/0,redis://h2:2"
            tls_key = "/etc/key.pem"
            [hooks]
            secret = "h"
            url = "http://backend"
            [[auth_keys]]
            pem = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----"
            "#,
        )
        .unwrap();
        redact(&mut t);
        let out = toml::to_string(&t).unwrap();
        for secret in ["s3", "\"k\"", "pw", "abc", "\"h\""] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert_eq!(
            t["broker"].as_str(),
            Some("redis://:<redacted>@10.0.0.1:6379,redis://u:<redacted>@h:1/0,redis://h2:2")
        );
        assert_eq!(t["max_auth_token"].as_integer(), Some(8192));
        assert_eq!(t["tls_key"].as_str(), Some("/etc/key.pem"));
        assert_eq!(t["hooks"]["url"].as_str(), Some("http://backend"));
    }

    #[test]
    fn names_that_are_secrets() {
        for name in [
            "auth_secret",
            "secret",
            "api_key",
            "jwt_private_key",
            "redis_password",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in [
            "max_auth_token",
            "tls_key",
            "secretary",
            "auth_secret_file_x",
        ] {
            assert!(!is_secret(name), "{name}");
        }
    }
}
