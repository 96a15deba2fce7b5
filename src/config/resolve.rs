//! From an experiment file to the experiments it defines: templates (`extends`), sweeps
//! (`matrix`) and command-line overrides (`--set`), all on located trees so every value keeps
//! the file and line (or override) it came from.
//!
//! Order of precedence, lowest first: defaults < templates (in `extends` order, each after
//! the templates it extends) < the experiment file < its matrix values < `--set` overrides.
//! Maps merge key by key; any other value (lists included) is replaced whole.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use super::MAX_CONFIG_BYTES;
use super::located::{self, MAX_DEPTH, Node, NodeValue, Origin, Pos};

/// Deepest template chain accepted (a guard against runaway chains, not a design limit).
pub const MAX_TEMPLATE_DEPTH: usize = 16;
/// Most templates one experiment file may apply, counting every `extends` entry of every
/// template it reaches (a template named twice counts twice): fan-out `extends` lists
/// otherwise grow exponentially with the chain depth.
pub const MAX_TEMPLATES: usize = 256;
/// Most experiments a `matrix:` may expand to, and most `include` / `exclude` entries.
pub const MAX_MATRIX_POINTS: usize = 1024;

/// A resolution problem: where, which key, what.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolveError {
    pub origin: Origin,
    pub key: String,
    pub message: String,
}

fn error(origin: &Origin, key: &str, message: impl Into<String>) -> ResolveError {
    ResolveError {
        origin: origin.clone(),
        key: key.to_string(),
        message: message.into(),
    }
}

/// Reads a template's text by path (relative to the directory hft runs in).
pub type TemplateReader<'a> = dyn FnMut(&Path) -> Result<String, String> + 'a;

/// One experiment of a file, as a located tree, with the name suffix of its matrix point.
#[derive(Debug, Clone)]
pub struct Point {
    pub tree: Node,
    /// `[optimizer.type=muon,model.hidden_size=64]`, empty without a matrix.
    pub suffix: String,
}

/// One trial of a `search:`: the values it sets (key path, value as JSON text) and the name
/// suffix they give it (`[model.hidden_size=64,optimizer.lr=0.0031]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Trial {
    pub suffix: String,
    pub values: Vec<(String, String)>,
}

/// Parses `text` (the experiment file `file`), applies its templates, expands its matrix and
/// applies `overrides` (`path=value`) to every point. With `trial`, the file's one point
/// gets the trial's values after the overrides (a search decides the keys it searches).
pub fn resolve(
    file: &Path,
    text: &str,
    overrides: &[String],
    trial: Option<&Trial>,
    read_template: &mut TemplateReader,
) -> Result<Vec<Point>, ResolveError> {
    let source = file.display().to_string();
    let root = parse_document(text, &source)?;
    let mut chain = vec![file.to_path_buf()];
    let mut applied = 0;
    let mut tree = apply_extends(root, &mut chain, &mut applied, read_template)?;
    let matrix = take_key(&mut tree, "matrix");
    if let (Some(_), Some(search)) = (&matrix, child(&tree, "search")) {
        return Err(error(
            &search.origin,
            "search",
            "a file has either a `matrix:` or a `search:`, not both: search the matrix's keys \
             with `choice` instead",
        ));
    }
    let points = match matrix {
        Some(m) => expand_matrix(&m)?,
        None => vec![(String::new(), Vec::new())],
    };
    let overrides = overrides
        .iter()
        .map(|o| parse_override(o))
        .collect::<Result<Vec<_>, _>>()?;
    let trial_values = match trial {
        Some(t) => t
            .values
            .iter()
            .map(|(path, value)| trial_value(path, value))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let mut out = Vec::with_capacity(points.len());
    for (suffix, values) in points {
        let mut t = tree.clone();
        for (path, value) in values.iter().chain(&overrides).chain(&trial_values) {
            set_path(&mut t, path, value.clone())?;
        }
        let suffix = match trial {
            Some(trial) => trial.suffix.clone(),
            None => suffix,
        };
        out.push(Point { tree: t, suffix });
    }
    Ok(out)
}

/// A trial's value as a located node whose origin names the search.
fn trial_value(path: &str, value: &str) -> Result<(String, Node), ResolveError> {
    let origin = Origin::new(&format!("search trial {path}={value}"), Pos::default());
    let mut node = located::parse(value, &origin.source)
        .map_err(|(_, m)| error(&origin, &format!("search.space.{path}"), m))?;
    node.set_origin(&origin);
    Ok((path.to_string(), node))
}

fn parse_document(text: &str, source: &str) -> Result<Node, ResolveError> {
    // read_text refuses such files before reading them; this guards other callers.
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(error(
            &Origin::new(source, Pos { line: 1, column: 1 }),
            "",
            format!(
                "file is {} bytes; config files are limited to {MAX_CONFIG_BYTES} bytes",
                text.len()
            ),
        ));
    }
    let node = located::parse(text, source)
        .map_err(|(pos, msg)| error(&Origin::new(source, pos), "", msg))?;
    match node.value {
        NodeValue::Null => Ok(Node::empty_map(node.origin)),
        NodeValue::Map(_) => Ok(node),
        _ => Err(error(
            &node.origin,
            "",
            "an experiment file must be a mapping of keys (name, data, model, ...)",
        )),
    }
}

/// The value of `key` in a mapping node.
fn child<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        NodeValue::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

/// Removes `key` from a mapping node and returns its value.
fn take_key(node: &mut Node, key: &str) -> Option<Node> {
    let NodeValue::Map(entries) = &mut node.value else {
        return None;
    };
    let i = entries.iter().position(|(k, _)| k == key)?;
    Some(entries.remove(i).1)
}

/// Whether `path`, taken relative to the project directory (the directory hft runs in),
/// leads outside it. Decided on the spelling (`..` against the components before it), not
/// by following symbolic links: a link the project itself holds (`trainingdata -> /data`)
/// is the project owner's choice. Absolute paths are compared with the current directory.
pub fn escapes_project(path: &Path) -> bool {
    fn normal(path: &Path) -> Option<Vec<Component<'_>>> {
        let mut out: Vec<Component> = Vec::new();
        for c in path.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir => match out.last() {
                    Some(Component::Normal(_)) => {
                        out.pop();
                    }
                    _ => return None,
                },
                other => out.push(other),
            }
        }
        Some(out)
    }
    if !path.has_root() {
        return normal(path).is_none();
    }
    let Some(p) = normal(path) else {
        return true;
    };
    let Ok(cwd) = std::env::current_dir() else {
        return true;
    };
    let inside = |root: &Path| normal(root).is_some_and(|r| p.starts_with(&r));
    !(inside(&cwd) || cwd.canonicalize().is_ok_and(|c| inside(&c)))
}

/// Replaces `extends` by the merged templates it names, recursively.
fn apply_extends(
    mut node: Node,
    chain: &mut Vec<PathBuf>,
    applied: &mut usize,
    read_template: &mut TemplateReader,
) -> Result<Node, ResolveError> {
    let Some(extends) = take_key(&mut node, "extends") else {
        return Ok(node);
    };
    let paths: Vec<(String, Origin)> = match &extends.value {
        NodeValue::Str(s) => vec![(s.clone(), extends.origin.clone())],
        NodeValue::Seq(items) => items
            .iter()
            .map(|n| match &n.value {
                NodeValue::Str(s) => Ok((s.clone(), n.origin.clone())),
                _ => Err(error(&n.origin, "extends", "must be a template path")),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(error(
                &extends.origin,
                "extends",
                "must be a template path or a list of them",
            ));
        }
    };
    let mut base: Option<Node> = None;
    for (path, origin) in paths {
        let path = PathBuf::from(path);
        let show = |c: &[PathBuf]| {
            c.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" -> ")
        };
        if escapes_project(&path) {
            return Err(error(
                &origin,
                "extends",
                format!(
                    "template {} is outside the project directory; templates must be \
                     inside the directory hft runs in",
                    path.display()
                ),
            ));
        }
        if chain.contains(&path) {
            let mut cycle = chain.clone();
            cycle.push(path.clone());
            return Err(error(
                &origin,
                "extends",
                format!("template cycle: {}", show(&cycle)),
            ));
        }
        if chain.len() > MAX_TEMPLATE_DEPTH {
            return Err(error(
                &origin,
                "extends",
                format!(
                    "template chain deeper than {MAX_TEMPLATE_DEPTH}: {}",
                    show(chain)
                ),
            ));
        }
        *applied += 1;
        if *applied > MAX_TEMPLATES {
            return Err(error(
                &origin,
                "extends",
                format!(
                    "more than {MAX_TEMPLATES} templates applied (counting repeats); chain: {}",
                    show(chain)
                ),
            ));
        }
        let text = read_template(&path).map_err(|e| {
            let mut c = chain.clone();
            c.push(path.clone());
            error(
                &origin,
                "extends",
                format!(
                    "cannot read template {} ({e}); chain: {}",
                    path.display(),
                    show(&c)
                ),
            )
        })?;
        let template = parse_document(&text, &path.display().to_string())?;
        chain.push(path);
        let template = apply_extends(template, chain, applied, read_template)?;
        chain.pop();
        base = Some(match base {
            Some(b) => merge(b, template),
            None => template,
        });
    }
    Ok(match base {
        Some(b) => merge(b, node),
        None => node,
    })
}

/// `over` on top of `base`: maps merge key by key, everything else is replaced.
pub fn merge(base: Node, over: Node) -> Node {
    match (base.value, over.value) {
        (NodeValue::Map(mut entries), NodeValue::Map(over_entries)) => {
            // Index the keys so that merging two huge maps stays linear. (Keys are unique
            // but for spellings like `1` and `"1"`; the first one wins, as before.)
            let mut index: HashMap<String, usize> = HashMap::with_capacity(entries.len());
            for (i, (k, _)) in entries.iter().enumerate() {
                index.entry(k.clone()).or_insert(i);
            }
            for (k, v) in over_entries {
                match index.get(&k) {
                    Some(&i) => {
                        let old =
                            std::mem::replace(&mut entries[i].1, Node::empty_map(v.origin.clone()));
                        entries[i].1 = merge(old, v);
                    }
                    None => {
                        index.insert(k.clone(), entries.len());
                        entries.push((k, v));
                    }
                }
            }
            Node {
                origin: over.origin,
                value: NodeValue::Map(entries),
            }
        }
        (_, value) => Node {
            origin: over.origin,
            value,
        },
    }
}

/// Sets a dotted path (`optimizer.lr`) in a mapping tree, creating maps on the way.
fn set_path(tree: &mut Node, path: &str, value: Node) -> Result<(), ResolveError> {
    let mut node = tree;
    let parts: Vec<&str> = path.split('.').collect();
    if parts.len() > MAX_DEPTH {
        return Err(error(
            &value.origin,
            path,
            format!("key paths are limited to {MAX_DEPTH} parts"),
        ));
    }
    // Maps created on the way come from the value's source (a `--set`): an error about
    // them names it.
    let origin = value.origin.clone();
    for (i, part) in parts.iter().enumerate() {
        let NodeValue::Map(entries) = &mut node.value else {
            return Err(error(
                &value.origin,
                path,
                format!(
                    "cannot set `{path}`: `{}` is not a mapping",
                    parts[..i].join(".")
                ),
            ));
        };
        let last = i + 1 == parts.len();
        let pos = match entries.iter().position(|(k, _)| k == part) {
            Some(p) => p,
            None => {
                entries.push((part.to_string(), Node::empty_map(origin.clone())));
                entries.len() - 1
            }
        };
        if last {
            entries[pos].1 = value;
            return Ok(());
        }
        node = &mut entries[pos].1;
    }
    Ok(())
}

/// `optimizer.lr=1e-3` -> (path, value node typed as YAML would type it).
fn parse_override(text: &str) -> Result<(String, Node), ResolveError> {
    let label = format!("--set {text}");
    let origin = Origin::new(&label, Pos { line: 0, column: 0 });
    let Some((path, value)) = text.split_once('=') else {
        return Err(error(
            &origin,
            "",
            "expected PATH=VALUE, e.g. optimizer.lr=1e-3",
        ));
    };
    let path = path.trim();
    let valid = !path.is_empty()
        && path
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !valid {
        return Err(error(&origin, path, "not a key path like optimizer.lr"));
    }
    if path == "matrix" || path.starts_with("matrix.") {
        return Err(error(
            &origin,
            path,
            "a matrix cannot come from the command line: `--set` applies to every point \
             after the file's matrix is expanded; put the matrix in the file, or give one \
             value per build (--set model.hidden_size=8)",
        ));
    }
    let mut node = located::parse(value, &label).map_err(|(_, m)| error(&origin, path, m))?;
    node.set_origin(&origin);
    Ok((path.to_string(), node))
}

type Assignment = Vec<(String, Node)>;

/// The points of a `matrix:` block, with GitHub Actions semantics for `exclude` / `include`.
fn expand_matrix(matrix: &Node) -> Result<Vec<(String, Assignment)>, ResolveError> {
    let NodeValue::Map(entries) = &matrix.value else {
        return Err(error(
            &matrix.origin,
            "matrix",
            "must map key paths to lists of values",
        ));
    };
    let mut axes: Vec<(String, Vec<Node>)> = Vec::new();
    let mut exclude = Vec::new();
    let mut include = Vec::new();
    for (k, v) in entries {
        let key = format!("matrix.{k}");
        match (k.as_str(), &v.value) {
            ("exclude", _) => exclude = assignments(v, &key)?,
            ("include", _) => include = assignments(v, &key)?,
            (_, NodeValue::Seq(values)) if !values.is_empty() => {
                axes.push((k.clone(), values.clone()));
            }
            _ => return Err(error(&v.origin, &key, "must be a non-empty list of values")),
        }
    }
    let product = axes
        .iter()
        .try_fold(1usize, |n, (_, values)| n.checked_mul(values.len()))
        .filter(|&n| n <= MAX_MATRIX_POINTS);
    let entries_ok = include.len() <= MAX_MATRIX_POINTS && exclude.len() <= MAX_MATRIX_POINTS;
    if product.is_none() || !entries_ok {
        return Err(error(
            &matrix.origin,
            "matrix",
            format!(
                "expands to more than {MAX_MATRIX_POINTS} experiments (or has more \
                 include / exclude entries than that)"
            ),
        ));
    }
    let mut points: Vec<Assignment> = vec![Vec::new()];
    for (k, values) in &axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((k.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    if axes.is_empty() {
        points.clear();
    }
    let is_axis = |k: &str| axes.iter().any(|(a, _)| a == k);
    let value_of = |p: &Assignment, k: &str| p.iter().find(|(pk, _)| pk == k).map(|(_, v)| json(v));
    points.retain(|p| {
        !exclude
            .iter()
            .any(|ex| ex.iter().all(|(k, v)| value_of(p, k) == Some(json(v))))
    });
    let originals = points.len();
    for inc in &include {
        let mut matched = false;
        for p in points.iter_mut().take(originals) {
            let fits = inc
                .iter()
                .filter(|(k, _)| is_axis(k))
                .all(|(k, v)| value_of(p, k) == Some(json(v)));
            if fits {
                matched = true;
                for (k, v) in inc.iter().filter(|(k, _)| !is_axis(k)) {
                    p.retain(|(pk, _)| pk != k);
                    p.push((k.clone(), v.clone()));
                }
            }
        }
        if !matched {
            points.push(inc.clone());
        }
    }
    if points.is_empty() {
        return Err(error(&matrix.origin, "matrix", "expands to no experiments"));
    }
    Ok(points
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            // Name by the axes (all keys for points only `include` created).
            let named: Vec<String> = p
                .iter()
                .filter(|(k, _)| i >= originals || is_axis(k))
                .map(|(k, v)| format!("{k}={}", scalar_text(v)))
                .collect();
            (format!("[{}]", named.join(",")), p)
        })
        .collect())
}

/// A list of `{path: value}` maps (exclude / include entries).
fn assignments(list: &Node, key: &str) -> Result<Vec<Assignment>, ResolveError> {
    let NodeValue::Seq(items) = &list.value else {
        return Err(error(
            &list.origin,
            key,
            "must be a list of {path: value} maps",
        ));
    };
    items
        .iter()
        .map(|item| match &item.value {
            NodeValue::Map(entries) => Ok(entries.clone()),
            _ => Err(error(
                &item.origin,
                key,
                "each entry must be a {path: value} map",
            )),
        })
        .collect()
}

fn json(n: &Node) -> serde_json::Value {
    n.to_json(&mut located::LocationMap::default())
}

/// A value as it appears in a matrix point's name: strings bare, everything else as JSON.
fn scalar_text(n: &Node) -> String {
    match json(n) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn run(
        text: &str,
        templates: &[(&str, &str)],
        overrides: &[&str],
    ) -> Result<Vec<(String, serde_json::Value)>, ResolveError> {
        let map: BTreeMap<PathBuf, String> = templates
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        let mut reader = |p: &Path| map.get(p).cloned().ok_or_else(|| "not found".to_string());
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let points = resolve(Path::new("exp.yaml"), text, &overrides, None, &mut reader)?;
        Ok(points
            .into_iter()
            .map(|p| (p.suffix, json(&p.tree)))
            .collect())
    }

    #[test]
    fn templates_merge_maps_and_replace_lists_later_entries_win() {
        let t1 = "data: {symbols: [A, B], sequence_length: 10}\nmodel: {type: lstm}\n";
        let t2 = "extends: t1.yaml\nmodel: {hidden_size: 8}\n";
        let t3 = "model: {type: mlp}\n";
        let exp = "extends: [t2.yaml, t3.yaml]\ndata: {symbols: [C]}\n";
        let out = run(
            exp,
            &[("t1.yaml", t1), ("t2.yaml", t2), ("t3.yaml", t3)],
            &[],
        )
        .unwrap();
        let v = &out[0].1;
        assert_eq!(
            v["data"]["symbols"],
            serde_json::json!(["C"]),
            "lists replaced"
        );
        assert_eq!(v["data"]["sequence_length"], 10, "maps merged");
        assert_eq!(v["model"]["type"], "mlp", "later template wins");
        assert_eq!(v["model"]["hidden_size"], 8);
        assert!(v.get("extends").is_none());
    }

    #[test]
    fn cycles_and_missing_templates_name_the_chain() {
        let err = run(
            "extends: a.yaml\n",
            &[
                ("a.yaml", "extends: b.yaml\n"),
                ("b.yaml", "extends: a.yaml\n"),
            ],
            &[],
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("exp.yaml -> a.yaml -> b.yaml -> a.yaml"),
            "{}",
            err.message
        );
        let err = run(
            "extends: a.yaml\n",
            &[("a.yaml", "extends: gone.yaml\n")],
            &[],
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("chain: exp.yaml -> a.yaml -> gone.yaml"),
            "{}",
            err.message
        );
        assert_eq!(&*err.origin.source, "a.yaml");
    }

    #[test]
    fn template_chains_are_limited() {
        // t0 -> t1 -> ... -> t16: seventeen templates below the experiment.
        let names: Vec<String> = (0..=MAX_TEMPLATE_DEPTH)
            .map(|i| format!("t{i}.yaml"))
            .collect();
        let texts: Vec<String> = (0..=MAX_TEMPLATE_DEPTH)
            .map(|i| match names.get(i + 1) {
                Some(next) => format!("extends: {next}\n"),
                None => "seed: 1\n".to_string(),
            })
            .collect();
        let templates: Vec<(&str, &str)> = names
            .iter()
            .zip(&texts)
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let err = run("extends: t0.yaml\n", &templates, &[]).unwrap_err();
        assert!(
            err.message.contains("template chain deeper than 16"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("exp.yaml -> t0.yaml -> t1.yaml"),
            "{}",
            err.message
        );
        // Sixteen deep is fine.
        assert!(run("extends: t1.yaml\n", &templates, &[]).is_ok());
    }

    #[test]
    fn fan_out_of_templates_is_limited() {
        // Each level names the next one four times: 4^8 applications without a limit.
        let texts: Vec<String> = (0..8)
            .map(|i| {
                format!(
                    "extends: [t{0}.yaml, t{0}.yaml, t{0}.yaml, t{0}.yaml]\n",
                    i + 1
                )
            })
            .chain(["seed: 1\n".to_string()])
            .collect();
        let names: Vec<String> = (0..9).map(|i| format!("t{i}.yaml")).collect();
        let templates: Vec<(&str, &str)> = names
            .iter()
            .zip(&texts)
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let err = run("extends: t0.yaml\n", &templates, &[]).unwrap_err();
        assert!(
            err.message.contains("more than 256 templates"),
            "{}",
            err.message
        );
    }

    #[test]
    fn templates_outside_the_project_are_rejected() {
        for bad in [
            "../../etc/passwd",
            "templates/../../x.yaml",
            "/etc/passwd",
            "./../x.yaml",
        ] {
            let exp = format!("seed: 1\nextends: [templates/ok.yaml, {bad}]\n");
            let err = run(&exp, &[("templates/ok.yaml", "")], &[]).unwrap_err();
            assert_eq!(err.key, "extends", "{bad}");
            assert_eq!(err.origin.pos.line, 2, "{bad}");
            assert!(
                err.message.contains("outside the project directory"),
                "{bad}: {}",
                err.message
            );
        }
        // `..` that stays inside is fine.
        let ok = run(
            "extends: templates/../templates/./ok.yaml\n",
            &[("templates/../templates/./ok.yaml", "seed: 3\n")],
            &[],
        )
        .unwrap();
        assert_eq!(ok[0].1["seed"], 3);
        let cwd = std::env::current_dir().unwrap();
        assert!(!escapes_project(&cwd.join("templates/x.yaml")));
        assert!(escapes_project(&cwd.join("../x.yaml")));
        assert!(!escapes_project(Path::new("")));
    }

    #[test]
    fn oversized_files_and_templates_are_rejected() {
        let big = format!(
            "description: \"{}\"\n",
            "x".repeat(MAX_CONFIG_BYTES as usize)
        );
        let err = run(&big, &[], &[]).unwrap_err();
        assert!(
            err.message.contains("limited to 1048576"),
            "{}",
            err.message
        );
        let err = run("extends: t.yaml\n", &[("t.yaml", &big)], &[]).unwrap_err();
        assert_eq!(&*err.origin.source, "t.yaml");
        assert!(
            err.message.contains("limited to 1048576"),
            "{}",
            err.message
        );
    }

    #[test]
    fn huge_matrices_and_key_paths_are_rejected() {
        let axis = |k: &str| format!("  {k}: [{}]\n", ["1"; 11].join(", "));
        let exp = format!("matrix:\n{}{}{}", axis("a"), axis("b"), axis("c"));
        let err = run(&exp, &[], &[]).unwrap_err();
        assert_eq!(err.key, "matrix");
        assert!(err.message.contains("more than 1024"), "{}", err.message);
        let deep = vec!["a"; MAX_DEPTH + 1].join(".");
        let err = run("", &[], &[&format!("{deep}=1")]).unwrap_err();
        assert!(
            err.message.contains("limited to 32 parts"),
            "{}",
            err.message
        );
    }

    #[test]
    fn merging_huge_maps_is_fast() {
        let keys = |n: usize| (0..n).map(|i| format!("k{i}: {i}\n")).collect::<String>();
        let base = keys(40_000);
        let started = std::time::Instant::now();
        let out = run(
            &format!("extends: t.yaml\n{base}"),
            &[("t.yaml", &base)],
            &[],
        )
        .unwrap();
        assert_eq!(out[0].1["k39999"], 39999);
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    }

    #[test]
    fn overrides_are_typed_and_win() {
        let out = run(
            "optimizer: {lr: 0.1}\n",
            &[],
            &[
                "optimizer.lr=1e-3",
                "model.type=gru",
                "data.symbols=[AA, BB]",
            ],
        )
        .unwrap();
        let v = &out[0].1;
        assert_eq!(v["optimizer"]["lr"], 0.001);
        assert_eq!(v["model"]["type"], "gru");
        assert_eq!(v["data"]["symbols"], serde_json::json!(["AA", "BB"]));
        assert!(run("", &[], &["optimizer.lr"]).is_err());
        assert!(run("", &[], &["optimizer..lr=1"]).is_err());
    }

    #[test]
    fn matrix_expands_with_exclude_and_include() {
        let exp = "\
matrix:
  optimizer.type: [adamw, muon, shampoo]
  model.hidden_size: [64, 128]
  exclude:
    - {optimizer.type: shampoo, model.hidden_size: 128}
  include:
    - {optimizer.type: adamw, training.epochs: 20}
    - {optimizer.type: sgd, model.hidden_size: 32}
";
        let out = run(exp, &[], &[]).unwrap();
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "[optimizer.type=adamw,model.hidden_size=64]",
                "[optimizer.type=adamw,model.hidden_size=128]",
                "[optimizer.type=muon,model.hidden_size=64]",
                "[optimizer.type=muon,model.hidden_size=128]",
                "[optimizer.type=shampoo,model.hidden_size=64]",
                "[optimizer.type=sgd,model.hidden_size=32]",
            ]
        );
        assert_eq!(
            out[0].1["training"]["epochs"], 20,
            "include adds to matching points"
        );
        assert!(out[2].1["training"].get("epochs").is_none());
        assert_eq!(out[5].1["model"]["hidden_size"], 32);
        assert!(out[0].1.get("matrix").is_none());
    }

    #[test]
    fn matrix_errors_are_located() {
        let err = run("matrix:\n  model.hidden_size: 64\n", &[], &[]).unwrap_err();
        assert_eq!(err.key, "matrix.model.hidden_size");
        assert_eq!(err.origin.pos.line, 2);
    }
}
