//! Serde adapters of the value types that serde and humantime do not cover
//! (rules and enums spelled as strings, a string or a list), and of the
//! values that must be checked where they are read (a path that starts
//! with `/`, a duration above zero, a non-empty secret), so that a bad value
//! is refused at its key and line like a wrong type. Each adapter reads and
//! writes the same spelling: `print-config` writes what a file may hold.

use std::time::Duration;

use herald::{Rule, UnknownNamespaces, UnknownProcedures};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A namespace name: ASCII letters, digits, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct NamespaceName(pub String);

impl<'de> Deserialize<'de> for NamespaceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if !herald::namespace::valid_namespace_name(&name) {
            return Err(D::Error::custom(format!(
                "bad namespace name {name:?}: a namespace name is ASCII letters, digits, '_' and '-'"
            )));
        }
        Ok(NamespaceName(name))
    }
}

/// Defines a `with` module for an `Option<T>` spelled as one of fixed
/// strings.
macro_rules! spelled {
    ($module:ident, $ty:ty, $expected:literal, { $($text:literal => $value:expr),* $(,)? }) => {
        #[doc = concat!("`", stringify!($ty), "` as one of ", $expected, ".")]
        pub mod $module {
            use super::*;

            /// Reads the spelling.
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
                match String::deserialize(d)?.as_str() {
                    $($text => Ok(Some($value)),)*
                    other => Err(D::Error::custom(format!(
                        concat!("unknown value {:?}: expected ", $expected), other
                    ))),
                }
            }

            /// Writes the spelling.
            pub fn serialize<S: Serializer>(v: &Option<$ty>, s: S) -> Result<S::Ok, S::Error> {
                match v {
                    $(Some(x) if *x == $value => s.serialize_str($text),)*
                    Some(_) => Err(serde::ser::Error::custom("a value without a spelling")),
                    None => s.serialize_none(),
                }
            }
        }
    };
}

spelled!(rule, Rule, r#""any", "authenticated" or "none""#, {
    "any" => Rule::Any,
    "authenticated" => Rule::Authenticated,
    "none" => Rule::None,
});

spelled!(unknown_namespaces, UnknownNamespaces, r#""plain" or "refuse""#, {
    "plain" => UnknownNamespaces::Plain,
    "refuse" => UnknownNamespaces::Refuse,
});

spelled!(unknown_procedures, UnknownProcedures, r#""error" or "ignore""#, {
    "error" => UnknownProcedures::Error,
    "ignore" => UnknownProcedures::Ignore,
});

spelled!(log_format, crate::LogFormat, r#""text" or "json""#, {
    "text" => crate::LogFormat::Text,
    "json" => crate::LogFormat::Json,
});

/// A string or an array of strings, as a list; written as an array.
pub mod one_or_many {
    use super::*;

    /// Reads a string or an array of strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a string or an array of strings")]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(Some(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }))
    }

    /// Writes an array.
    pub fn serialize<S: Serializer>(v: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }
}

/// The WebSocket endpoint path: starts with `/`.
pub mod endpoint_path {
    use super::*;

    /// Reads a path that starts with `/`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let path = String::deserialize(d)?;
        if !path.starts_with('/') {
            return Err(D::Error::custom(format!(
                "path must start with '/': {path:?}"
            )));
        }
        Ok(Some(path))
    }

    /// Writes the path.
    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }
}

/// A secret: a non-empty string.
pub mod secret {
    use super::*;

    /// Reads a non-empty string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let secret = String::deserialize(d)?;
        if secret.is_empty() {
            return Err(D::Error::custom("the secret must not be empty"));
        }
        Ok(Some(secret))
    }

    /// Writes the string.
    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }
}

/// A duration above zero (humantime syntax).
pub mod positive_duration {
    use super::*;

    /// Reads a humantime duration above zero.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let duration: Duration = humantime_serde::deserialize(d)?;
        if duration.is_zero() {
            return Err(D::Error::custom("the duration must be greater than zero"));
        }
        Ok(Some(duration))
    }

    /// Writes the duration.
    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        humantime_serde::option::serialize(v, s)
    }
}
