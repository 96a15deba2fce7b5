//! YAML -> a tree that remembers where every value came from.
//!
//! serde-saphyr parses the file (panic-free, with input budgets) into [`Node`]s carrying
//! line and column. The tree is then turned into a `serde_json::Value` for typed
//! deserialisation, plus a [`LocationMap`] from key path (`data.split.train`) to position,
//! so that type errors and range checks found later can still name file, line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A position in a source file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

/// Where a value was set: a file and position, or a command-line override (line 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// A file path, or the override's text (`--set optimizer.lr=1e-3`).
    pub source: Arc<str>,
    pub pos: Pos,
}

impl Origin {
    pub fn new(source: &str, pos: Pos) -> Origin {
        Origin {
            source: Arc::from(source),
            pos,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            f.write_str(&self.source)
        } else {
            write!(f, "{}:{}", self.source, self.pos.line)
        }
    }
}

/// One YAML value with where it came from.
#[derive(Debug, Clone)]
pub struct Node {
    pub origin: Origin,
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

/// Key path -> where that value was set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocationMap(BTreeMap<String, Origin>);

impl LocationMap {
    /// Where `path` was set, or its nearest ancestor that some file spells out.
    pub fn find(&self, path: &str) -> Origin {
        let mut p = path;
        loop {
            if let Some(origin) = self.0.get(p) {
                return origin.clone();
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => {
                    return self
                        .0
                        .get("")
                        .cloned()
                        .unwrap_or_else(|| Origin::new("", Pos { line: 1, column: 1 }));
                }
            }
        }
    }

    /// Where exactly `path` was set; `None` when it took its default.
    pub fn get(&self, path: &str) -> Option<&Origin> {
        self.0.get(path)
    }
}

/// Parses YAML text into a located tree; `source` names it in origins (a file path, or an
/// override's text). Errors carry the parser's own message and position.
pub fn parse(text: &str, source: &str) -> Result<Node, (Pos, String)> {
    let spanned: Result<Spanned<Tree>, _> = serde_saphyr::from_str(text);
    let source: Arc<str> = Arc::from(source);
    match spanned {
        Ok(s) => {
            let mut node = s.value.0.with_pos(pos_of(&s.referenced));
            node.set_source(&source);
            Ok(node)
        }
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
        if self.origin.pos == Pos::default() {
            self.origin.pos = pos;
        }
        self
    }

    fn set_source(&mut self, source: &Arc<str>) {
        self.origin.source = source.clone();
        match &mut self.value {
            NodeValue::Seq(items) => items.iter_mut().for_each(|n| n.set_source(source)),
            NodeValue::Map(entries) => entries.iter_mut().for_each(|(_, n)| n.set_source(source)),
            _ => {}
        }
    }

    /// Every value of this tree now comes from `origin` (an override, a matrix entry).
    pub fn set_origin(&mut self, origin: &Origin) {
        self.origin = origin.clone();
        match &mut self.value {
            NodeValue::Seq(items) => items.iter_mut().for_each(|n| n.set_origin(origin)),
            NodeValue::Map(entries) => entries.iter_mut().for_each(|(_, n)| n.set_origin(origin)),
            _ => {}
        }
    }

    /// An empty mapping (the document of an empty file).
    pub fn empty_map(origin: Origin) -> Node {
        Node {
            origin,
            value: NodeValue::Map(Vec::new()),
        }
    }

    /// Converts to JSON for typed deserialisation, recording every path's position.
    pub fn to_json(&self, locations: &mut LocationMap) -> serde_json::Value {
        self.to_json_at("", locations)
    }

    fn to_json_at(&self, path: &str, locations: &mut LocationMap) -> serde_json::Value {
        use serde_json::Value;
        locations.0.insert(path.to_string(), self.origin.clone());
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
        origin: Origin::new("", Pos::default()),
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
        let node = parse(text, "x.yaml").unwrap();
        let mut locs = LocationMap::default();
        let json = node.to_json(&mut locs);
        assert_eq!(json["data"]["split"]["train"], 0.7);
        assert_eq!(locs.find("data.split.train").pos.line, 4);
        assert_eq!(locs.find("data.symbols[1]").pos.line, 5);
        assert_eq!(
            locs.find("data.split.val").pos.line,
            3,
            "falls back to the parent"
        );
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\na: 2\n", "x.yaml").unwrap_err();
        assert!(err.1.contains("duplicate mapping key: a"), "{}", err.1);
        assert!(!err.1.contains("DuplicateKeyPolicy"), "{}", err.1);
        assert_eq!(err.0.line, 2);
    }
}
