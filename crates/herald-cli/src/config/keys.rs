//! The tree of config keys, read from the schema structs themselves.
//!
//! Environment variable names, `check-config`'s suggestions and the test
//! that keeps docs/configuration.md in step with the code all need the list
//! of keys. Keeping it by hand would let it drift from the structs, so it is
//! discovered: a probing [`serde::Deserializer`] deserializes
//! [`FileConfig`](super::FileConfig), records the field names every struct
//! declares (`deserialize_struct` receives them), descends into tables and
//! maps, and marks every other value as a leaf. A leaf cannot be given a
//! value of a type the probe does not know, so the probe fails there after
//! recording it, and the next run skips the keys already known; each run
//! finds one more key, until every table is complete. No hand-written
//! table, no schema crate, and a field added to a section shows up by
//! itself.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::FileConfig;

/// Stands for the name of an entry of a map table, such as the `NAME` of
/// `[namespaces.NAME]`.
pub const ANY_NAME: &str = "NAME";

/// A node of the key tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A key with a value (a string, number, boolean, duration or list).
    Leaf,
    /// A table with fixed keys, such as `[channels]`.
    Table(BTreeMap<&'static str, Node>),
    /// A table of tables named by the user, such as `[namespaces.NAME]`:
    /// every entry has the keys of the node.
    Map(Box<Node>),
}

impl Node {
    /// Every leaf key as a dotted path (`namespaces.NAME.history_size`), in
    /// order.
    pub fn leaves(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, path: &mut Vec<String>, out: &mut Vec<String>) {
        match self {
            Node::Leaf => out.push(path.join(".")),
            Node::Table(children) => {
                for (name, child) in children {
                    path.push((*name).to_owned());
                    child.collect(path, out);
                    path.pop();
                }
            }
            Node::Map(child) => {
                path.push(ANY_NAME.to_owned());
                child.collect(path, out);
                path.pop();
            }
        }
    }

    /// The children of a table (empty for other nodes).
    pub fn children(&self) -> impl Iterator<Item = (&'static str, &Node)> {
        let table = match self {
            Node::Table(children) => Some(children),
            _ => None,
        };
        table.into_iter().flatten().map(|(k, v)| (*k, v))
    }
}

/// The key tree of the config file.
pub fn schema() -> &'static Node {
    static SCHEMA: OnceLock<Node> = OnceLock::new();
    // A schema the probe cannot walk fully still yields the keys it found;
    // `walk` reports why, and a unit test requires a complete walk.
    SCHEMA.get_or_init(|| match walk() {
        Ok(node) | Err((node, _)) => node,
    })
}

/// Walks [`FileConfig`]: the whole key tree, or the part found and why the
/// walk stopped (a schema type the probe cannot walk, such as a
/// `#[serde(flatten)]` table).
pub fn walk() -> Result<Node, (Node, String)> {
    let mut known = Known::default();
    // Each run records at least one more key; the bound only guards
    // against a walk that makes no progress.
    for _ in 0..10_000 {
        if known.done(&[]) {
            return Ok(known.node(&[]));
        }
        let before = known.size();
        match FileConfig::deserialize(Probe {
            path: Vec::new(),
            known: &mut known,
        }) {
            Ok(_) => return Ok(known.node(&[])),
            Err(ProbeError::Leaf) => {}
            Err(ProbeError::Other(e)) => return Err((known.node(&[]), e)),
        }
        if known.size() == before {
            return Err((known.node(&[]), "the walk makes no progress".into()));
        }
    }
    Err((known.node(&[]), "the walk does not end".into()))
}

use serde::Deserialize as _;

/// What the runs so far learned, by path.
#[derive(Default)]
struct Known {
    leaves: std::collections::BTreeSet<Vec<&'static str>>,
    tables: BTreeMap<Vec<&'static str>, &'static [&'static str]>,
    maps: std::collections::BTreeSet<Vec<&'static str>>,
}

impl Known {
    fn size(&self) -> usize {
        self.leaves.len() + self.tables.len() + self.maps.len()
    }

    fn done(&self, path: &[&'static str]) -> bool {
        if self.leaves.contains(path) {
            return true;
        }
        if let Some(fields) = self.tables.get(path) {
            return fields.iter().all(|f| self.done(&child(path, f)));
        }
        self.maps.contains(path) && self.done(&child(path, ANY_NAME))
    }

    fn node(&self, path: &[&'static str]) -> Node {
        if let Some(fields) = self.tables.get(path) {
            Node::Table(
                fields
                    .iter()
                    .map(|f| (*f, self.node(&child(path, f))))
                    .collect(),
            )
        } else if self.maps.contains(path) {
            Node::Map(Box::new(self.node(&child(path, ANY_NAME))))
        } else {
            Node::Leaf
        }
    }
}

fn child(path: &[&'static str], name: &'static str) -> Vec<&'static str> {
    let mut p = path.to_vec();
    p.push(name);
    p
}

#[derive(Debug)]
enum ProbeError {
    /// The probe reached a leaf (expected: it cannot produce its value).
    Leaf,
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Leaf => f.write_str("leaf"),
            ProbeError::Other(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        ProbeError::Other(msg.to_string())
    }
}

struct Probe<'a> {
    path: Vec<&'static str>,
    known: &'a mut Known,
}

impl Probe<'_> {
    fn leaf(self) -> ProbeError {
        self.known.leaves.insert(self.path);
        ProbeError::Leaf
    }
}

macro_rules! leaves {
    ($($method:ident),*) => {
        $(fn $method<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ProbeError> {
            Err(self.leaf())
        })*
    };
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    leaves!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_seq,
        deserialize_identifier,
        deserialize_ignored_any
    );

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _visitor: V,
    ) -> Result<V::Value, ProbeError> {
        Err(self.leaf())
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, ProbeError> {
        Err(self.leaf())
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, ProbeError> {
        Err(self.leaf())
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeError> {
        Err(self.leaf())
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.known.maps.insert(self.path.clone());
        let entry = child(&self.path, ANY_NAME);
        let pending = (!self.known.done(&entry)).then_some(entry);
        visitor.visit_map(Entries {
            fields: pending.iter().map(|p| p[p.len() - 1]).collect(),
            path: self.path,
            known: self.known,
            current: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.known.tables.insert(self.path.clone(), fields);
        let pending = fields
            .iter()
            .copied()
            .filter(|f| !self.known.done(&child(&self.path, f)))
            .collect::<Vec<_>>();
        visitor.visit_map(Entries {
            fields: pending.into_iter().rev().collect(),
            path: self.path,
            known: self.known,
            current: None,
        })
    }
}

/// The entries the probe offers a struct or map: the keys not known yet.
struct Entries<'a> {
    /// Pending keys, last first.
    fields: Vec<&'static str>,
    path: Vec<&'static str>,
    known: &'a mut Known,
    current: Option<&'static str>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        let Some(field) = self.fields.pop() else {
            return Ok(None);
        };
        self.current = Some(field);
        seed.deserialize(de::value::BorrowedStrDeserializer::new(field))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        let field = self
            .current
            .take()
            .ok_or_else(|| ProbeError::Other("a value without a key".into()))?;
        seed.deserialize(Probe {
            path: child(&self.path, field),
            known: self.known,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_schema_is_walked() {
        if let Err((_, why)) = walk() {
            panic!(
                "the config schema cannot be walked ({why}): keep its sections plain structs and maps (no #[serde(flatten)])"
            );
        }
    }

    #[test]
    fn the_tree_has_the_sections_and_their_keys() {
        let leaves = schema().leaves();
        for key in [
            "listen",
            "ping_interval",
            "auth_audience",
            "unknown_procedures",
            "channels.history_size",
            "channels.unknown_namespaces",
            "namespaces.NAME.history_size",
            "namespaces.NAME.publish",
        ] {
            assert!(leaves.iter().any(|l| l == key), "{key} missing: {leaves:?}");
        }
        assert!(!leaves.iter().any(|l| l == "channels" || l == "namespaces"));
        assert!(
            !leaves
                .iter()
                .any(|l| l == "namespaces.NAME.unknown_namespaces")
        );
    }
}
