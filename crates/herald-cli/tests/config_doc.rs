//! docs/configuration.md documents every config key, with its variable and
//! its default, and nothing else: the keys of its "Keys" tables are
//! compared with the key tree read from the code's schema structs
//! (`herald_cli::config::keys`), both ways, and each default with the value
//! the code uses (`herald print-config` with nothing set).

use std::collections::BTreeMap;

use herald_cli::FileConfig;
use herald_cli::config::{env, keys, print};
use serde::Deserialize as _;

const DOC: &str = include_str!("../../../docs/configuration.md");

/// One documented key.
struct Row {
    line: usize,
    variable: String,
    default: String,
}

/// The rows of the tables under "## Keys", by dotted key.
fn documented() -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    let mut in_keys = false;
    let mut prefix: Option<String> = None;
    for (i, line) in DOC.lines().enumerate() {
        if let Some(title) = line.strip_prefix("## ") {
            in_keys = title == "Keys";
            prefix = None;
            continue;
        }
        if !in_keys {
            continue;
        }
        if let Some(title) = line.strip_prefix("### ") {
            prefix = if title == "Top level" {
                Some(String::new())
            } else {
                title
                    .strip_prefix("`[")
                    .and_then(|t| t.strip_suffix("]`"))
                    .map(|t| format!("{t}."))
            };
            assert!(
                prefix.is_some(),
                "docs/configuration.md:{}: a heading under ## Keys is `### Top level` or `### `[TABLE]``",
                i + 1
            );
            continue;
        }
        let (Some(prefix), Some(row)) = (&prefix, line.strip_prefix("| `")) else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        assert!(
            cells.len() >= 4,
            "docs/configuration.md:{}: a key row is | `key` | `VARIABLE` | default | meaning |",
            i + 1
        );
        let key = format!("{prefix}{}", cells[0].trim_end_matches('`'));
        let previous = rows.insert(
            key.clone(),
            Row {
                line: i + 1,
                variable: cells[1].trim_matches('`').to_owned(),
                default: cells[2].to_owned(),
            },
        );
        assert!(
            previous.is_none(),
            "docs/configuration.md:{}: `{key}` is documented twice",
            i + 1
        );
    }
    rows
}

fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

/// `raw` read as the value of `key` and written back as the code writes it.
fn normalized(key: &str, raw: &str) -> Result<toml::Value, String> {
    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
    let value = env::parse_value(&path, raw)?;
    let mut table = toml::Table::new();
    let mut inner = value;
    for part in path.iter().rev() {
        let mut t = toml::Table::new();
        t.insert(part.clone(), inner);
        inner = toml::Value::Table(t);
    }
    if let toml::Value::Table(t) = inner {
        table = t;
    }
    let file = FileConfig::deserialize(toml::Value::Table(table)).map_err(|e| e.to_string())?;
    let written = toml::Table::try_from(&file).map_err(|e| e.to_string())?;
    lookup(&written, key)
        .cloned()
        .ok_or_else(|| format!("{raw:?} is not written back"))
}

#[test]
fn every_key_is_documented_with_its_variable_and_default() {
    let code = keys::schema().leaves();
    let doc = documented();
    let defaults = print::defaults();
    let mut problems = Vec::new();
    for key in &code {
        let Some(row) = doc.get(key) else {
            let (table, name) = key.rsplit_once('.').unwrap_or(("", key));
            let heading = if table.is_empty() {
                "### Top level".to_owned()
            } else {
                format!("### `[{table}]`")
            };
            problems.push(format!(
                "`{key}` is a config key but docs/configuration.md does not document it: add the row\n    | `{name}` | `{}` | DEFAULT | MEANING |\n  to the table under `{heading}` in its \"## Keys\" section (DEFAULT: the value in backticks, or none)",
                env::env_name(key)
            ));
            continue;
        };
        let variable = env::env_name(key);
        if row.variable != variable {
            problems.push(format!(
                "docs/configuration.md:{}: the variable of `{key}` is `{variable}`, not `{}`",
                row.line, row.variable
            ));
        }
        let default = row
            .default
            .strip_prefix('`')
            .and_then(|d| d.strip_suffix('`'));
        match (default, lookup(&defaults, key)) {
            (Some(doc_value), Some(code_value)) => match normalized(key, doc_value) {
                Ok(v) if &v == code_value => {}
                Ok(v) => problems.push(format!(
                    "docs/configuration.md:{}: the default of `{key}` is {code_value} in the code, not {v} (`{doc_value}`)",
                    row.line
                )),
                Err(e) => problems.push(format!(
                    "docs/configuration.md:{}: the default of `{key}`, `{doc_value}`, is not a value of the key: {e}",
                    row.line
                )),
            },
            (None, Some(code_value)) => problems.push(format!(
                "docs/configuration.md:{}: `{key}` has the default {code_value} in the code: write it in backticks",
                row.line
            )),
            (Some(doc_value), None) => problems.push(format!(
                "docs/configuration.md:{}: `{key}` has no default in the code, but the doc says `{doc_value}` (write none, or what unset means)",
                row.line
            )),
            (None, None) => {}
        }
    }
    for (key, row) in &doc {
        if !code.contains(key) {
            problems.push(format!(
                "docs/configuration.md:{}: `{key}` is documented but is no config key (rename or remove the row)",
                row.line
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn the_doc_tables_are_read() {
    // Guards the reader: a reformatted section must not make the test
    // above vacuous.
    let doc = documented();
    for key in [
        "listen",
        "channels.unknown_namespaces",
        "namespaces.NAME.history_size",
    ] {
        assert!(
            doc.contains_key(key),
            "{key} not read from docs/configuration.md"
        );
    }
}
