//! A layer of settings (the file, the environment, the flags): a TOML
//! table with the origin of each key, checked value by value against the
//! schema, and merged over the layers below it. Merging tables rather than
//! structs keeps one mechanism for every section, including those added
//! later.

use std::collections::BTreeMap;

use serde::Deserialize as _;

use super::FileConfig;
use super::error::{ConfigError, Origin};

/// One layer of settings.
#[derive(Debug, Default, Clone)]
pub struct Layer {
    /// The keys it sets.
    pub table: toml::Table,
    /// Where each key (leaf or table, as a dotted path) came from.
    pub origins: BTreeMap<String, Origin>,
}

impl Layer {
    /// Sets the value at `path`, creating the tables on the way.
    pub fn insert(&mut self, path: &[String], value: toml::Value, origin: Origin) {
        for depth in 1..path.len() {
            self.origins
                .entry(path[..depth].join("."))
                .or_insert_with(|| origin.clone());
        }
        self.origins.insert(path.join("."), origin);
        insert(&mut self.table, path, value);
    }

    /// Merges `over` into this layer: its keys win, tables merge key by key.
    pub fn merge(&mut self, over: Layer) {
        merge(&mut self.table, over.table);
        for (key, origin) in over.origins {
            // A table keeps where it was first defined; a value is where
            // it was last set.
            if self.is_table(&key) {
                self.origins.entry(key).or_insert(origin);
            } else {
                self.origins.insert(key, origin);
            }
        }
    }

    fn is_table(&self, key: &str) -> bool {
        let mut value = None;
        let mut table = Some(&self.table);
        for part in key.split('.') {
            value = table.and_then(|t| t.get(part));
            table = value.and_then(toml::Value::as_table);
        }
        value.is_some_and(toml::Value::is_table)
    }

    /// Where `key` (a dotted path) came from: the key itself, else the
    /// nearest table above it.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        let mut key = key;
        loop {
            if let Some(o) = self.origins.get(key) {
                return Some(o);
            }
            key = &key[..key.rfind('.')?];
        }
    }

    /// Checks every value against the schema, one by one (so that every bad
    /// value is reported, each with its origin).
    pub fn check(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut path = Vec::new();
        self.check_table(&self.table, &mut path, &mut errors);
        errors
    }

    fn check_table(&self, table: &toml::Table, path: &mut Vec<String>, out: &mut Vec<ConfigError>) {
        for (key, value) in table {
            path.push(key.clone());
            let nested = value.as_table().filter(|t| !t.is_empty());
            match (nested, check_value(path, value)) {
                (_, Ok(())) => {}
                (Some(t), Err(e)) => {
                    let before = out.len();
                    self.check_table(t, path, out);
                    if out.len() == before {
                        out.push(self.error(path, e));
                    }
                }
                (None, Err(e)) => out.push(self.error(path, e)),
            }
            path.pop();
        }
    }

    fn error(&self, path: &[String], message: String) -> ConfigError {
        let key = path.join(".");
        ConfigError {
            origin: self.origin(&key).cloned(),
            key,
            message,
        }
    }
}

/// Whether a config that sets only `value` at `path` is valid: the value
/// is read with the same types and checks as in a file.
pub fn check_value(path: &[String], value: &toml::Value) -> Result<(), String> {
    let mut table = toml::Table::new();
    insert(&mut table, path, value.clone());
    FileConfig::deserialize(toml::Value::Table(table))
        .map(|_| ())
        .map_err(|e| e.message().to_owned())
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, tables)) = path.split_last() else {
        return;
    };
    let mut table = table;
    for name in tables {
        let entry = table
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        table = entry.as_table_mut().expect("a table was just put there");
    }
    table.insert(last.clone(), value);
}

/// `over`'s keys into `base`; tables merge key by key, other values replace.
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn merging_keeps_the_keys_of_both_and_the_upper_wins() {
        let mut low = Layer::default();
        low.insert(
            &path("namespaces.chat.history_size"),
            5.into(),
            Origin::Env("A".into()),
        );
        low.insert(&path("ping_interval"), "8s".into(), Origin::Env("B".into()));
        let mut high = Layer::default();
        high.insert(
            &path("namespaces.chat.recover"),
            true.into(),
            Origin::Flag("--x".into()),
        );
        high.insert(
            &path("ping_interval"),
            "9s".into(),
            Origin::Flag("--y".into()),
        );
        low.merge(high);
        let chat = low.table["namespaces"]["chat"].as_table().unwrap();
        assert_eq!(chat["history_size"].as_integer(), Some(5));
        assert_eq!(chat["recover"].as_bool(), Some(true));
        assert_eq!(low.table["ping_interval"].as_str(), Some("9s"));
        assert_eq!(
            low.origin("ping_interval"),
            Some(&Origin::Flag("--y".into()))
        );
        assert_eq!(
            low.origin("namespaces.chat.presence"),
            Some(&Origin::Env("A".into()))
        );
    }

    #[test]
    fn every_bad_value_is_reported_with_its_origin() {
        let mut layer = Layer::default();
        layer.insert(
            &path("ping_interval"),
            "soon".into(),
            Origin::Env("P".into()),
        );
        layer.insert(
            &path("namespaces.chat.history_size"),
            (-1).into(),
            Origin::Env("H".into()),
        );
        layer.insert(
            &path("namespaces.chat.presence"),
            true.into(),
            Origin::Env("OK".into()),
        );
        let errors = layer.check();
        let keys: Vec<_> = errors
            .iter()
            .map(|e| (e.key.as_str(), e.origin.clone()))
            .collect();
        assert_eq!(
            keys,
            [
                (
                    "namespaces.chat.history_size",
                    Some(Origin::Env("H".into()))
                ),
                ("ping_interval", Some(Origin::Env("P".into())))
            ]
        );
    }
}
