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
    /// Every key path with where it was set, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Origin)> {
        self.0.iter()
    }
}

impl FromIterator<(String, Origin)> for LocationMap {
    fn from_iter<I: IntoIterator<Item = (String, Origin)>>(iter: I) -> LocationMap {
        LocationMap(iter.into_iter().collect())
    }
}

/// Deepest nesting of mappings and sequences accepted in a config (and of a `--set` or
/// matrix key path). Real configs nest four or five levels. Parsing recurses once per level
/// (about 50 KiB of stack per level in a debug build), so this also bounds stack use.
pub const MAX_DEPTH: usize = 32;
/// Most aliases (`*name`) and most anchors (`&name`) in one YAML text.
pub const MAX_ALIASES: usize = 1_000;
/// Most values (scalars, mappings, sequences) in one YAML text.
pub const MAX_NODES: usize = 100_000;
/// Most values aliases may replay in one YAML text (an anchored section of 50 values used
/// 200 times): a "billion laughs" document stops here, in milliseconds, instead of
/// exhausting memory.
pub const MAX_ALIAS_VALUES: usize = 10_000;
/// Most bytes of string values one YAML text may expand to (aliases of long strings are
/// copied once per use).
pub const MAX_VALUE_BYTES: usize = 8 << 20;

/// serde-saphyr's input budgets, set for hand-written configs.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            // Above max_depth, so that the depth budget (with its message) trips first.
            flow_nesting_limit: 2 * MAX_DEPTH,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
            max_nodes: MAX_NODES,
            max_events: 3 * MAX_NODES,
            max_documents: 1,
            max_total_scalar_bytes: MAX_VALUE_BYTES,
            max_recorded_anchor_events: MAX_ALIAS_VALUES,
            max_recorded_anchor_bytes: MAX_VALUE_BYTES,
            max_merge_keys: MAX_ALIASES,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_VALUES,
            max_replay_stack_depth: MAX_DEPTH,
            max_alias_expansions_per_anchor: MAX_ALIASES,
        },
    }
}

thread_local! {
    /// (values, string bytes) built by the parse running on this thread: what aliases
    /// expand to, which the parser's own budgets (counted on the input) do not see.
    static BUILT: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// Counts one value of `bytes` string bytes against the value and [`MAX_VALUE_BYTES`]
/// limits (a backstop: the parser's budgets trip first).
fn charge<E: de::Error>(bytes: usize) -> Result<(), E> {
    let (nodes, total) = BUILT.with(|b| {
        let (n, t) = b.get();
        let next = (n + 1, t.saturating_add(bytes));
        b.set(next);
        next
    });
    if nodes > 2 * MAX_NODES + MAX_ALIAS_VALUES {
        return Err(E::custom(format!(
            "YAML too complex: more than {} values after expanding aliases",
            2 * MAX_NODES + MAX_ALIAS_VALUES
        )));
    }
    if total > MAX_VALUE_BYTES {
        return Err(E::custom(format!(
            "YAML too large: string values expand to more than {MAX_VALUE_BYTES} bytes \
             (aliases of long strings?)"
        )));
    }
    Ok(())
}

/// Parses YAML text into a located tree; `source` names it in origins (a file path, or an
/// override's text). Errors carry the parser's own message and position.
///
/// Hostile input is bounded: nesting ([`MAX_DEPTH`]), aliases and anchors
/// ([`MAX_ALIASES`]), values before and after alias expansion ([`MAX_NODES`],
/// [`MAX_ALIAS_VALUES`]) and string
/// bytes ([`MAX_VALUE_BYTES`]); the caller bounds the text's size.
pub fn parse(text: &str, source: &str) -> Result<Node, (Pos, String)> {
    BUILT.with(|b| b.set((0, 0)));
    let spanned: Result<Spanned<Tree>, _> = serde_saphyr::from_str_with_options(text, options());
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
            let message = match budget_message(e.without_snippet()) {
                Some(m) => m,
                None => {
                    // Drop the library's advice to programmers ("set DuplicateKeyPolicy ...").
                    let message = e.without_snippet().to_string();
                    plain_parse_message(
                        message
                            .split(", set DuplicateKeyPolicy")
                            .next()
                            .unwrap_or(&message),
                    )
                }
            };
            Err((pos, message))
        }
    }
}

/// The parser's message in the user's terms: the position is already in front of it (so
/// its trailing ` at line L, column C` goes), and a rejected NaN or infinity says what is
/// allowed instead of naming the parser's policy.
fn plain_parse_message(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(i)
            if message
                .get(i..)
                .is_some_and(|tail| tail.contains(", column ")) =>
        {
            message.get(..i).unwrap_or(message)
        }
        _ => message,
    };
    match message
        .strip_prefix("non-finite float ")
        .and_then(|rest| rest.strip_suffix(" rejected by the configured policy"))
    {
        Some(value) => format!(
            "{value} is not a finite number; NaN, infinities and numbers too large for a \
             64-bit float are not allowed"
        ),
        None => message.to_string(),
    }
}

fn alias_bomb() -> String {
    format!("aliases expand to more than {MAX_ALIAS_VALUES} values (an alias bomb?)")
}

/// A plain-words message for a breached input budget; `None` for other errors.
fn budget_message(e: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let mut e = e;
    while let E::AliasError { error, .. } | E::WithSnippet { error, .. } = e {
        e = error;
    }
    let what = match e {
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => format!("nested deeper than {MAX_DEPTH} levels"),
            B::Aliases { .. } => format!("more than {MAX_ALIASES} aliases (*name)"),
            B::Anchors { .. } => format!("more than {MAX_ALIASES} anchors (&name)"),
            B::AliasAnchorRatio { aliases, anchors } => {
                format!("{aliases} aliases of only {anchors} anchors")
            }
            B::Nodes { .. } | B::Events { .. } => format!("more than {MAX_NODES} values"),
            B::ScalarBytes { .. } | B::RecordedAnchorBytes { .. } => {
                format!("more than {MAX_VALUE_BYTES} bytes of values")
            }
            B::Documents { .. } => "more than one YAML document (`---`)".to_string(),
            B::RecordedAnchorEvents { .. } => alias_bomb(),
            B::MergeKeys { .. } => format!("more than {MAX_ALIASES} merge keys (<<)"),
            other => format!("{other:?}"),
        },
        E::AliasReplayLimitExceeded { .. } | E::AliasExpansionLimitExceeded { .. } => alias_bomb(),
        E::AliasReplayStackDepthExceeded { .. } => {
            format!("aliases nested deeper than {MAX_DEPTH} levels")
        }
        // The scanner's own nesting guard, should it trip before the depth budget.
        other if other.to_string().starts_with("recursion limit exceeded") => {
            format!("nested deeper than {MAX_DEPTH} levels")
        }
        _ => return None,
    };
    Some(format!("YAML too large or too complex: {what}"))
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
        charge::<E>(0)?;
        Ok(leaf(NodeValue::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        charge::<E>(0)?;
        Ok(leaf(NodeValue::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        Tree::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tree, E> {
        charge::<E>(0)?;
        Ok(leaf(NodeValue::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tree, E> {
        charge::<E>(0)?;
        Ok(leaf(NodeValue::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tree, E> {
        charge::<E>(0)?;
        Ok(leaf(NodeValue::UInt(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree, E> {
        charge::<E>(0)?;
        Ok(leaf(NodeValue::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree, E> {
        charge::<E>(v.len())?;
        Ok(leaf(NodeValue::Str(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Tree, E> {
        charge::<E>(v.len())?;
        Ok(leaf(NodeValue::Str(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        charge::<A::Error>(0)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Tree>>()? {
            items.push(item.value.0.with_pos(pos_of(&item.referenced)));
        }
        Ok(leaf(NodeValue::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        charge::<A::Error>(0)?;
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

/// 1-based (line, column) of byte `offset` in `bytes`; the column counts characters.
pub fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = bytes.get(..offset).unwrap_or(bytes);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_messages_are_in_the_users_terms() {
        let (pos, message) = parse("a: [1\n", "f").unwrap_err();
        assert_eq!(pos.line, 1);
        assert!(!message.contains(" at line "), "{message}");
        let (_, message) = parse("lr: .nan\n", "f").unwrap_err();
        assert!(
            message.starts_with("`.nan` is not a finite number"),
            "{message}"
        );
    }

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

    /// The classic "billion laughs": nine levels of ten aliases each, 10^9 values.
    pub(crate) fn billion_laughs() -> String {
        let mut text = String::from("a0: &a0 [lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        text
    }

    #[test]
    fn alias_bombs_are_rejected_quickly() {
        let started = std::time::Instant::now();
        let err = parse(&billion_laughs(), "x.yaml").unwrap_err();
        assert!(err.1.contains("YAML too large or too complex"), "{}", err.1);
        assert!(err.1.contains("aliases expand"), "{}", err.1);
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
        // Many aliases of one long string: few values, but each copy is a new string.
        let long = "x".repeat(100_000);
        let refs = vec!["*s"; 200].join(", ");
        let err = parse(&format!("s: &s {long}\nl: [{refs}]\n"), "x.yaml").unwrap_err();
        assert!(err.1.contains("YAML too large"), "{}", err.1);
        // Too many aliases outright.
        let refs = vec!["*s"; MAX_ALIASES + 1].join(", ");
        let err = parse(&format!("s: &s 1\nl: [{refs}]\n"), "x.yaml").unwrap_err();
        assert!(err.1.contains("aliases"), "{}", err.1);
        // Ordinary use of anchors still works.
        let ok = parse("d: &d {lr: 1}\na: *d\nb: *d\n", "x.yaml").unwrap();
        assert!(matches!(ok.value, NodeValue::Map(ref m) if m.len() == 3));
    }

    #[test]
    fn deep_nesting_is_rejected() {
        // The CLI parses on the main thread (8 MiB of stack); test threads get 2 MiB, about
        // what a debug build needs for MAX_DEPTH levels.
        std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(deep_nesting)
            .unwrap()
            .join()
            .unwrap();
    }

    fn deep_nesting() {
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let err = parse(&deep, "x.yaml").unwrap_err();
        assert!(err.1.contains("nested deeper than 32"), "{}", err.1);
        let mut block = String::new();
        for i in 0..=MAX_DEPTH {
            block.push_str(&format!("{}k{i}:\n", "  ".repeat(i)));
        }
        let err = parse(&block, "x.yaml").unwrap_err();
        assert!(err.1.contains("nested deeper than 32"), "{}", err.1);
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok, "x.yaml").is_ok());
    }

    #[test]
    fn too_many_values_are_rejected() {
        let text = format!("l: [{}]\n", vec!["1"; MAX_NODES + 1].join(","));
        let err = parse(&text, "x.yaml").unwrap_err();
        assert!(err.1.contains("more than 100000 values"), "{}", err.1);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\na: 2\n", "x.yaml").unwrap_err();
        assert!(err.1.contains("duplicate mapping key: a"), "{}", err.1);
        assert!(!err.1.contains("DuplicateKeyPolicy"), "{}", err.1);
        assert_eq!(err.0.line, 2);
    }
}
