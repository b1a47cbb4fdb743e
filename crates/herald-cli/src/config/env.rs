//! Environment variables: every key of the file has one, `HERALD_` and the
//! key's path in capitals, tables joined with `_`:
//! `HERALD_PING_INTERVAL`, `HERALD_CHANNELS_PUBLISH`,
//! `HERALD_NAMESPACES_<NAME>_HISTORY_SIZE` (the namespace name is what lies
//! between `NAMESPACES_` and the key).
//!
//! A value is read with the key's own type and checks, as in a file: a
//! TOML literal of the right type (`5`, `true`, `["a", "b"]`), else a
//! comma-separated list for a list key, else the text as a string (so
//! `HERALD_NODE_ID=123` is the string "123" and `HERALD_PING_INTERVAL=8s`
//! a duration). A value that none of these fits is an error naming the
//! variable. An unknown `HERALD_` variable that looks like a key (it starts
//! with a table's name, or is a small typo of a key) is an error; any other
//! is a warning, except the few variables of Herald's own tools.

use super::error::{ConfigError, Origin};
use super::keys::{ANY_NAME, Node, schema};
use super::layer::{Layer, check_value};

/// The prefix of every variable.
pub const PREFIX: &str = "HERALD_";

/// `HERALD_` variables that are not config keys: the config file's path
/// (`--config`), and the variables of Herald's test and benchmark tools.
pub const NOT_KEYS: &[&str] = &[
    "HERALD_CONFIG",
    "HERALD_BIN",
    "HERALD_FIXTURE_BIN",
    "HERALD_FAULT_PROXY_BIN",
    "HERALD_TESTCERT_BIN",
    "HERALD_CMD",
    "HERALD_TEST_NATS_URL",
    "HERALD_BENCH_DEBUG",
    "HERALD_FUZZ_SEED",
];

/// Prefixes of `HERALD_` variables that are not config keys: what a
/// `--workers` supervisor hands its workers.
pub const NOT_KEY_PREFIXES: &[&str] = &["HERALD_SUPERVISED_"];

/// The variable of a key (a dotted path; `NAME` stands for a map entry's
/// name and is written `<NAME>`).
pub fn env_name(key: &str) -> String {
    let parts: Vec<String> = key
        .split('.')
        .map(|s| {
            if s == ANY_NAME {
                "<NAME>".to_owned()
            } else {
                s.to_ascii_uppercase()
            }
        })
        .collect();
    format!("{PREFIX}{}", parts.join("_"))
}

/// The environment as a layer, with its errors and warnings.
#[derive(Debug, Default)]
pub struct EnvLayer {
    /// The keys the variables set.
    pub layer: Layer,
    /// Bad values and unknown variables that look like keys.
    pub errors: Vec<ConfigError>,
    /// Unknown variables that do not look like keys.
    pub warnings: Vec<String>,
}

/// Reads the `HERALD_` variables of `vars`. `namespaces` are the namespace
/// names set by the layers below, which a variable's name matches without
/// regard to case (else a name written in capitals is taken in lower case).
pub fn env_layer(
    vars: impl IntoIterator<Item = (String, String)>,
    namespaces: &[String],
) -> EnvLayer {
    let mut out = EnvLayer::default();
    let mut vars: Vec<_> = vars
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with(PREFIX)
                && !NOT_KEYS.contains(&k.as_str())
                && !NOT_KEY_PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let rest = &var[PREFIX.len()..];
        let Some(path) = resolve(rest, &rest.to_ascii_uppercase(), schema(), namespaces) else {
            unknown(&var, rest, &mut out);
            continue;
        };
        match parse_value(&path, &raw) {
            Ok(value) => out.layer.insert(&path, value, Origin::Env(var)),
            Err(message) => out.errors.push(ConfigError {
                origin: Some(Origin::Env(var)),
                key: path.join("."),
                message,
            }),
        }
    }
    out
}

/// Reads `raw` as the value of the key at `path`, as described in the
/// module doc; the error is that of the likeliest reading.
pub fn parse_value(path: &[String], raw: &str) -> Result<toml::Value, String> {
    let literal = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .filter(|t| t.len() == 1)
        .and_then(|mut t| t.remove("v"));
    let list = || {
        toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        )
    };
    let mut first_error = None;
    let readings = [
        literal.clone(),
        raw.contains(',').then(list),
        Some(toml::Value::String(raw.to_owned())),
        Some(list()),
    ];
    for value in readings.into_iter().flatten() {
        match check_value(path, &value) {
            Ok(()) => return Ok(value),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| format!("cannot read {raw:?}")))
}

/// The key path named by `upper` (the variable after `HERALD_`, in
/// capitals; `rest` as written, for namespace names).
fn resolve(rest: &str, upper: &str, node: &Node, names: &[String]) -> Option<Vec<String>> {
    match node {
        Node::Leaf => upper.is_empty().then(Vec::new),
        Node::Table(children) => children.iter().find_map(|(name, child)| {
            let up = name.to_ascii_uppercase();
            let tail = if upper == up {
                Some(up.len())
            } else {
                upper
                    .strip_prefix(up.as_str())
                    .and_then(|r| r.strip_prefix('_'))
                    .map(|_| up.len() + 1)
            }?;
            let mut path = resolve(&rest[tail..], &upper[tail..], child, names)?;
            path.insert(0, (*name).to_owned());
            Some(path)
        }),
        Node::Map(child) => upper
            .match_indices('_')
            .map(|(i, _)| i)
            .rev()
            .filter(|&i| i > 0)
            .find_map(|i| {
                let mut path = resolve(&rest[i + 1..], &upper[i + 1..], child, names)?;
                let written = &rest[..i];
                let name = names
                    .iter()
                    .find(|n| n.eq_ignore_ascii_case(written))
                    .cloned()
                    .unwrap_or_else(|| {
                        if written.bytes().any(|b| b.is_ascii_lowercase()) {
                            written.to_owned()
                        } else {
                            written.to_ascii_lowercase()
                        }
                    });
                path.insert(0, name);
                Some(path)
            }),
    }
}

/// An unknown variable: an error when it looks like a key, else a warning.
fn unknown(var: &str, rest: &str, out: &mut EnvLayer) {
    let lower = rest.to_ascii_lowercase();
    let sections = schema()
        .children()
        .filter(|(_, n)| !matches!(n, Node::Leaf))
        .any(|(name, _)| lower.starts_with(&format!("{name}_")));
    let names: Vec<String> = schema().leaves().iter().map(|k| env_name(k)).collect();
    let nearest = names
        .iter()
        .map(|n| (strsim::jaro_winkler(n, &var.to_ascii_uppercase()), n))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let typo = schema()
        .children()
        .any(|(name, _)| strsim::damerau_levenshtein(name, &lower) <= 2 && name.len() > 4);
    if sections || typo {
        let hint = nearest.map_or(String::new(), |(_, n)| format!(" (did you mean {n}?)"));
        out.errors.push(ConfigError {
            origin: Some(Origin::Env(var.to_owned())),
            key: String::new(),
            message: format!("not a config key{hint}; docs/configuration.md lists the variables"),
        });
    } else {
        out.warnings.push(format!(
            "environment variable {var} is not a config key and is ignored"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(vars: &[(&str, &str)]) -> EnvLayer {
        env_layer(
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            &["Chat".to_owned()],
        )
    }

    #[test]
    fn names_map_to_keys() {
        assert_eq!(env_name("ping_interval"), "HERALD_PING_INTERVAL");
        assert_eq!(
            env_name("namespaces.NAME.history_size"),
            "HERALD_NAMESPACES_<NAME>_HISTORY_SIZE"
        );
        let l = layer(&[
            ("HERALD_PING_INTERVAL", "9s"),
            ("HERALD_MAX_CONNECTIONS_PER_IP", "3"),
            ("HERALD_NODE_ID", "123"),
            (
                "HERALD_ALLOWED_ORIGINS",
                "https://a.example, https://b.example",
            ),
            ("HERALD_AUTH_AUDIENCE", "app"),
            ("HERALD_CHANNELS_PUBLISH", "authenticated"),
            ("HERALD_NAMESPACES_CHAT_HISTORY_SIZE", "10"),
            ("HERALD_NAMESPACES_MY_ROOM_JOIN_LEAVE", "true"),
            ("HERALD_FIXTURE_BIN", "/x"),
        ]);
        assert!(
            l.errors.is_empty() && l.warnings.is_empty(),
            "{:?} {:?}",
            l.errors,
            l.warnings
        );
        let t = &l.layer.table;
        assert_eq!(t["ping_interval"].as_str(), Some("9s"));
        assert_eq!(t["max_connections_per_ip"].as_integer(), Some(3));
        assert_eq!(t["node_id"].as_str(), Some("123"));
        assert_eq!(t["allowed_origins"].as_array().map(Vec::len), Some(2));
        assert_eq!(t["auth_audience"].as_str(), Some("app"));
        assert_eq!(t["channels"]["publish"].as_str(), Some("authenticated"));
        assert_eq!(
            t["namespaces"]["Chat"]["history_size"].as_integer(),
            Some(10)
        );
        assert_eq!(
            t["namespaces"]["my_room"]["join_leave"].as_bool(),
            Some(true)
        );
        assert_eq!(
            l.layer.origin("namespaces.Chat.history_size"),
            Some(&Origin::Env("HERALD_NAMESPACES_CHAT_HISTORY_SIZE".into()))
        );
    }

    #[test]
    fn bad_values_and_unknown_variables() {
        let l = layer(&[
            ("HERALD_MAX_PAYLOAD", "big"),
            ("HERALD_ALLOW_CLIENT_PUBLISH", "yes"),
            ("HERALD_PING_INTERVALL", "8s"),
            ("HERALD_NAMESPACES_CHAT_HISTORY", "5"),
            ("HERALD_SOMETHING_ELSE", "1"),
        ]);
        let errors: Vec<String> = l.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(
            errors[0].starts_with(
                "environment variable HERALD_ALLOW_CLIENT_PUBLISH: key `allow_client_publish`: "
            ),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with("environment variable HERALD_MAX_PAYLOAD: key `max_payload`: "),
            "{errors:#?}"
        );
        assert!(
            errors[2].contains("HERALD_NAMESPACES_CHAT_HISTORY: not a config key"),
            "{errors:#?}"
        );
        assert!(
            errors[3].contains(
                "HERALD_PING_INTERVALL: not a config key (did you mean HERALD_PING_INTERVAL?)"
            ),
            "{errors:#?}"
        );
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        assert!(l.warnings[0].contains("HERALD_SOMETHING_ELSE"));
    }
}
