//! Deserializers of the value types that serde and humantime do not cover
//! (rules, enums spelled as strings, a string or a list), shared by the
//! sections of the config file.

use herald::{Rule, UnknownNamespaces, UnknownProcedures};
use serde::{Deserialize, Deserializer};

/// A string or an array of strings, as a list.
pub(super) fn one_or_many<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    }))
}

pub(super) fn rule<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rule>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

pub(super) fn unknown_namespaces<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<UnknownNamespaces>, D::Error> {
    match String::deserialize(d)?.as_str() {
        "plain" => Ok(Some(UnknownNamespaces::Plain)),
        "refuse" => Ok(Some(UnknownNamespaces::Refuse)),
        other => Err(serde::de::Error::custom(format!(
            "unknown value {other:?}: expected \"plain\" or \"refuse\""
        ))),
    }
}

pub(super) fn unknown_procedures<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<UnknownProcedures>, D::Error> {
    match String::deserialize(d)?.as_str() {
        "error" => Ok(Some(UnknownProcedures::Error)),
        "ignore" => Ok(Some(UnknownProcedures::Ignore)),
        other => Err(serde::de::Error::custom(format!(
            "unknown value {other:?}: expected \"error\" or \"ignore\""
        ))),
    }
}
