//! YAML -> a tree that remembers where every value came from.
//!
//! serde-saphyr parses the file (panic-free, with input budgets) into [`Node`]s carrying
//! line and column. The tree is then turned into a `serde_json::Value` for typed
//! deserialisation, plus a [`LocationMap`] from key path (`data.split.train`) to position,
//! so that type errors and range checks found later can still name file, line and column.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A position in a source file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

/// One YAML value with its position.
#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub value: NodeValue,
}

#[derive(Debug, Clone)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in file order; the parser rejects duplicate keys.
    Map(Vec<(String, Node)>),
}

/// Key path -> position of that value in the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocationMap(BTreeMap<String, Pos>);

impl LocationMap {
    /// The position of `path`, or of its nearest ancestor that the file spells out.
    pub fn find(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.0.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => {
                    return self
                        .0
                        .get("")
                        .copied()
                        .unwrap_or(Pos { line: 1, column: 1 });
                }
            }
        }
    }
}

/// Parses YAML text into a located tree. Errors carry the parser's own message and position.
pub fn parse(text: &str) -> Result<Node, (Pos, String)> {
    let spanned: Result<Spanned<Tree>, _> = serde_saphyr::from_str(text);
    match spanned {
        Ok(s) => Ok(s.value.0.with_pos(pos_of(&s.referenced))),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    column: l.column(),
                })
                .unwrap_or(Pos { line: 1, column: 1 });
            // Drop the library's advice to programmers ("set DuplicateKeyPolicy ...").
            let message = e.without_snippet().to_string();
            let message = message
                .split(", set DuplicateKeyPolicy")
                .next()
                .unwrap_or(&message)
                .to_string();
            Err((pos, message))
        }
    }
}

fn pos_of(l: &serde_saphyr::Location) -> Pos {
    Pos {
        line: l.line(),
        column: l.column(),
    }
}

impl Node {
    fn with_pos(mut self, pos: Pos) -> Node {
        if self.pos == Pos::default() {
            self.pos = pos;
        }
        self
    }

    /// Converts to JSON for typed deserialisation, recording every path's position.
    pub fn to_json(&self, locations: &mut LocationMap) -> serde_json::Value {
        self.to_json_at("", locations)
    }

    fn to_json_at(&self, path: &str, locations: &mut LocationMap) -> serde_json::Value {
        use serde_json::Value;
        locations.0.insert(path.to_string(), self.pos);
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::UInt(u) => Value::from(*u),
            // NaN and infinities have no JSON form: keep them as strings so the typed layer
            // rejects them with a type error at the right place.
            NodeValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(f.to_string())),
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| n.to_json_at(&format!("{path}[{i}]"), locations))
                    .collect(),
            ),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, n)| {
                        let child = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        (k.clone(), n.to_json_at(&child, locations))
                    })
                    .collect(),
            ),
        }
    }
}

/// Deserialisation helper: a node whose children are `Spanned` so positions survive.
struct Tree(Node);

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

fn leaf(value: NodeValue) -> Tree {
    Tree(Node {
        pos: Pos::default(),
        value,
    })
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
        Ok(leaf(NodeValue::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        Ok(leaf(NodeValue::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        Tree::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tree, E> {
        Ok(leaf(NodeValue::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tree, E> {
        Ok(leaf(NodeValue::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tree, E> {
        Ok(leaf(NodeValue::UInt(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree, E> {
        Ok(leaf(NodeValue::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree, E> {
        Ok(leaf(NodeValue::Str(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Tree, E> {
        Ok(leaf(NodeValue::Str(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Tree>>()? {
            items.push(item.value.0.with_pos(pos_of(&item.referenced)));
        }
        Ok(leaf(NodeValue::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyString>>()? {
            let value: Spanned<Tree> = map.next_value()?;
            entries.push((key.value.0, value.value.0.with_pos(pos_of(&key.referenced))));
        }
        Ok(leaf(NodeValue::Map(entries)))
    }
}

/// A mapping key: strings as they are, scalars spelled out (`1: x` has key "1").
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = Tree::deserialize(d)?;
        match t.0.value {
            NodeValue::Str(s) => Ok(KeyString(s)),
            NodeValue::Int(i) => Ok(KeyString(i.to_string())),
            NodeValue::UInt(u) => Ok(KeyString(u.to_string())),
            NodeValue::Float(f) => Ok(KeyString(f.to_string())),
            NodeValue::Bool(b) => Ok(KeyString(b.to_string())),
            NodeValue::Null => Ok(KeyString("null".to_string())),
            NodeValue::Seq(_) | NodeValue::Map(_) => {
                Err(de::Error::custom("mapping keys must be scalars"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_positions_of_nested_keys() {
        let text = "name: x\ndata:\n  split:\n    train: 0.7\n  symbols: [A, B]\n";
        let node = parse(text).unwrap();
        let mut locs = LocationMap::default();
        let json = node.to_json(&mut locs);
        assert_eq!(json["data"]["split"]["train"], 0.7);
        assert_eq!(locs.find("data.split.train").line, 4);
        assert_eq!(locs.find("data.symbols[1]").line, 5);
        assert_eq!(
            locs.find("data.split.val").line,
            3,
            "falls back to the parent"
        );
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert!(err.1.contains("duplicate mapping key: a"), "{}", err.1);
        assert!(!err.1.contains("DuplicateKeyPolicy"), "{}", err.1);
        assert_eq!(err.0.line, 2);
    }
}
