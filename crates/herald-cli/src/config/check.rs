//! Reading a config file into a [`Layer`]: the TOML syntax, then every key
//! against the schema, so that `check-config` reports every error with its
//! key and line rather than only the first one serde stops at.
//!
//! The document is parsed once with its spans (`toml::de::DeTable`). When
//! it does not deserialize as a whole, each entry is tried alone (a
//! document that sets only that key, keeping the original spans), and an
//! entry that is a table is split further, so each error is pinned to the
//! deepest key that causes it. Every key of the schema is optional, so a
//! document with one key is a fair test of that key.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize as _;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::FileConfig;
use super::error::{ConfigError, Origin};
use super::layer::Layer;

/// Reads config text from `path` into a layer (every key, good or bad,
/// when the TOML syntax is right), with every error in it.
pub fn file_layer(path: &Path, text: &str) -> (Layer, Vec<ConfigError>) {
    let file = File { path, text };
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let error = ConfigError {
                origin: Some(file.origin(e.span().map_or(0, |s| s.start))),
                key: String::new(),
                message: e.message().to_owned(),
            };
            return (Layer::default(), vec![error]);
        }
    };
    let mut errors = Vec::new();
    if let Err(whole) = deserialize(doc.clone()) {
        file.split(doc.span(), &mut Vec::new(), doc.get_ref(), &mut errors);
        if errors.is_empty() {
            errors.push(file.error(&[], None, &whole));
        }
        errors.sort_by_key(|e| match &e.origin {
            Some(Origin::File { line, .. }) => *line,
            _ => 0,
        });
    }
    let mut layer = Layer::default();
    match toml::from_str(text) {
        Ok(table) => layer.table = table,
        Err(e) => errors.push(ConfigError {
            origin: None,
            key: String::new(),
            message: e.message().to_owned(),
        }),
    }
    file.origins(&mut Vec::new(), doc.get_ref(), &mut layer);
    (layer, errors)
}

fn deserialize(doc: Spanned<DeTable<'_>>) -> Result<FileConfig, toml::de::Error> {
    FileConfig::deserialize(toml::de::Deserializer::from(doc))
}

struct File<'a> {
    path: &'a Path,
    text: &'a str,
}

/// The keys from the root to an entry, each with the span of its table.
type Prefix<'i> = Vec<(Spanned<DeString<'i>>, Range<usize>)>;

impl<'i> File<'_> {
    fn origin(&self, offset: usize) -> Origin {
        let offset = offset.min(self.text.len());
        Origin::File {
            path: self.path.to_owned(),
            line: self.text.as_bytes()[..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
        }
    }

    fn error(
        &self,
        prefix: &[String],
        key_span: Option<Range<usize>>,
        e: &toml::de::Error,
    ) -> ConfigError {
        let at = e.span().or(key_span).map_or(0, |s| s.start);
        ConfigError {
            origin: Some(self.origin(at)),
            key: prefix.join("."),
            message: unknown_key_message(e.message()),
        }
    }

    /// Tries each entry of `table` alone; pushes the errors of the deepest
    /// entries that fail.
    fn split(
        &self,
        root: Range<usize>,
        prefix: &mut Prefix<'i>,
        table: &DeTable<'i>,
        out: &mut Vec<ConfigError>,
    ) {
        for (key, value) in table.iter() {
            let Err(e) = deserialize(wrap(root.clone(), prefix, key, value)) else {
                continue;
            };
            let before = out.len();
            if let DeValue::Table(inner) = value.get_ref() {
                let mut deeper = Vec::new();
                prefix.push((key.clone(), value.span()));
                self.split(root.clone(), prefix, inner, &mut deeper);
                prefix.pop();
                // A table tried one key at a time misses the keys it
                // requires: that is the whole table's error, not a key's.
                out.extend(
                    deeper
                        .into_iter()
                        .filter(|e| !e.message.starts_with("missing field")),
                );
            }
            let entry = key.span().start..value.span().end;
            let here = e
                .span()
                .is_none_or(|s| entry.start <= s.start && s.end <= entry.end);
            if out.len() == before && (here || prefix.is_empty()) {
                let mut path: Vec<String> = prefix
                    .iter()
                    .map(|(k, _)| k.get_ref().to_string())
                    .collect();
                path.push(key.get_ref().to_string());
                out.push(self.error(&path, Some(key.span()), &e));
            }
        }
    }

    /// Records the line of every key (tables and leaves).
    fn origins(&self, path: &mut Vec<String>, table: &DeTable<'i>, layer: &mut Layer) {
        for (key, value) in table.iter() {
            path.push(key.get_ref().to_string());
            layer
                .origins
                .insert(path.join("."), self.origin(key.span().start));
            if let DeValue::Table(inner) = value.get_ref() {
                self.origins(path, inner, layer);
            }
            path.pop();
        }
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`, ..." (every key
/// of the table) as "unknown key `x`", with the nearest key when one is
/// close.
fn unknown_key_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_owned();
    };
    let Some((name, expected)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let nearest = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match nearest {
        Some((_, k)) => format!("unknown key `{name}` (did you mean `{k}`?)"),
        None => format!("unknown key `{name}`"),
    }
}

/// A document that sets only `key = value` under the tables of `prefix`,
/// with the original spans.
fn wrap<'i>(
    root: Range<usize>,
    prefix: &Prefix<'i>,
    key: &Spanned<DeString<'i>>,
    value: &Spanned<DeValue<'i>>,
) -> Spanned<DeTable<'i>> {
    let mut table = DeTable::new();
    table.insert(key.clone(), value.clone());
    for (name, span) in prefix.iter().rev() {
        let mut outer = DeTable::new();
        outer.insert(
            name.clone(),
            Spanned::new(span.clone(), DeValue::Table(table)),
        );
        table = outer;
    }
    Spanned::new(root, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        file_layer(Path::new("h.toml"), text)
            .1
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_error_is_named_with_its_key_and_line() {
        let e = errors(
            "listen = \"127.0.0.1:1\"\nping_intervall = \"1s\"\n\n[namespaces.chat]\nhistory_size = 5\nhistory_ttl = \"soon\"\nsubscribe = \"everyone\"\nrecovr = true\n",
        );
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(
            e[0].starts_with("h.toml:2: key `ping_intervall`: unknown key `ping_intervall` (did you mean `ping_interval`?)"),
            "{e:#?}"
        );
        assert!(
            e[1].starts_with("h.toml:6: key `namespaces.chat.history_ttl`: "),
            "{e:#?}"
        );
        assert!(
            e[2].starts_with(
                "h.toml:7: key `namespaces.chat.subscribe`: unknown value \"everyone\""
            ),
            "{e:#?}"
        );
        assert!(
            e[3].starts_with("h.toml:8: key `namespaces.chat.recovr`: unknown key `recovr` (did you mean `recover`?)"),
            "{e:#?}"
        );
    }

    #[test]
    fn wrong_types_and_bad_values() {
        for (text, line, key, needle) in [
            (
                "\n\nmax_payload = \"big\"",
                3,
                "max_payload",
                "invalid type: string \"big\"",
            ),
            ("path = \"ws\"", 1, "path", "must start with '/'"),
            (
                "ping_timeout = \"0s\"",
                1,
                "ping_timeout",
                "greater than zero",
            ),
            (
                "[channels]\nunknown_namespaces = \"maybe\"",
                2,
                "channels.unknown_namespaces",
                "maybe",
            ),
            (
                "[namespaces.\"a b\"]\npresence = true",
                1,
                "namespaces.a b",
                "bad namespace name",
            ),
            ("auth_secret = \"\"", 1, "auth_secret", "must not be empty"),
        ] {
            let e = errors(text);
            assert_eq!(e.len(), 1, "{text:?}: {e:?}");
            let want = format!("h.toml:{line}: key `{key}`: ");
            assert!(
                e[0].starts_with(&want) && e[0].contains(needle),
                "{text:?}: {e:?}"
            );
        }
    }

    #[test]
    fn a_syntax_error_has_its_line() {
        let e = errors("listen = \"x\"\n\nping = = 3\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("h.toml:3: "), "{e:?}");
    }

    #[test]
    fn a_good_file_records_the_line_of_each_key() {
        let (layer, errors) = file_layer(
            Path::new("h.toml"),
            "listen = \"127.0.0.1:1\"\n[namespaces.chat]\npresence = true\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let line = |k: &str| match layer.origin(k) {
            Some(Origin::File { line, .. }) => *line,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(
            (
                line("listen"),
                line("namespaces.chat"),
                line("namespaces.chat.presence")
            ),
            (1, 2, 3)
        );
    }
}
