//! Sweeps among the reported runs: the matrix points of one experiment file (and search
//! trials, named the same way), `name[key=value,key2=value2]`, with the values each point
//! sets, for the report's scatter and parallel-coordinates views.

use super::runs::Run;

/// One sweep: the runs of one file and base name that carry swept values.
#[derive(Debug, PartialEq)]
pub(super) struct Sweep {
    /// `file: base name`.
    pub(super) title: String,
    /// The swept keys, in order of first appearance.
    pub(super) keys: Vec<String>,
    /// Each run's index and its value of each key (`None` where the point does not set it).
    pub(super) points: Vec<(usize, Vec<Option<serde_json::Value>>)>,
}

/// `base[k=v,...]` split into the base name and its `(key, value text)` pairs; `None` for a
/// name without swept values. A value may hold commas inside brackets (`[1,2]`); a pair
/// starts only where a comma outside brackets is followed by `key=`.
pub(super) fn parse_point(name: &str) -> Option<(&str, Vec<(String, String)>)> {
    let inner_end = name.strip_suffix(']')?.len();
    let open = name
        .char_indices()
        .filter(|&(_, c)| c == '[')
        .map(|(i, _)| i)
        .find(|&i| key_at(&name[i + 1..inner_end]).is_some())?;
    let inner = &name[open + 1..inner_end];
    let mut pairs = Vec::new();
    let (mut start, mut depth) = (0, 0i32);
    let mut cuts = Vec::new();
    for (i, c) in inner.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 && key_at(&inner[i + 1..]).is_some() => cuts.push(i),
            _ => {}
        }
    }
    cuts.push(inner.len());
    for cut in cuts {
        let pair = &inner[start..cut];
        let key = key_at(pair)?;
        pairs.push((key.to_string(), pair[key.len() + 1..].to_string()));
        start = cut + 1;
    }
    Some((&name[..open], pairs))
}

/// The config key at the start of `text` when `=` follows it (`optimizer.lr=`).
fn key_at(text: &str) -> Option<&str> {
    let end = text.find('=')?;
    let key = &text[..end];
    let mut chars = key.chars();
    let first = chars.next()?;
    let ok = (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    ok.then_some(key)
}

/// The sweeps among `runs`: groups of at least two runs of one file and base name.
pub(super) fn sweeps(runs: &[Run]) -> Vec<Sweep> {
    type Point = (usize, Vec<(String, serde_json::Value)>);
    let mut groups: Vec<(&str, &str, Vec<Point>)> = Vec::new();
    for run in runs {
        let Some((base, pairs)) = parse_point(&run.e.name) else {
            continue;
        };
        let values = pairs
            .into_iter()
            .map(|(k, text)| {
                let v = value(run, &k, &text);
                (k, v)
            })
            .collect();
        match groups
            .iter_mut()
            .find(|(f, b, _)| *f == run.e.file && *b == base)
        {
            Some((_, _, points)) => points.push((run.index, values)),
            None => groups.push((&run.e.file, base, vec![(run.index, values)])),
        }
    }
    groups
        .into_iter()
        .filter(|(_, _, points)| points.len() >= 2)
        .map(|(file, base, points)| {
            let mut keys: Vec<String> = Vec::new();
            for (k, _) in points.iter().flat_map(|(_, pairs)| pairs) {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
            let points = points
                .into_iter()
                .map(|(index, pairs)| {
                    let values = keys
                        .iter()
                        .map(|k| pairs.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone()))
                        .collect();
                    (index, values)
                })
                .collect();
            Sweep {
                title: format!("{file}: {base}"),
                keys,
                points,
            }
        })
        .collect()
}

/// A swept value: the resolved config's (a number stays a number) where the run has the
/// key, else the name's text.
fn value(run: &Run, key: &str, text: &str) -> serde_json::Value {
    let resolved = run
        .e
        .config
        .get(key)
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok());
    match resolved {
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::String(_))) => v,
        Some(serde_json::Value::Bool(b)) => serde_json::Value::String(b.to_string()),
        _ => serde_json::Value::String(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::html::tests::experiment;
    use crate::report::runs::runs;

    #[test]
    fn matrix_point_names_split_into_their_keys_and_values() {
        assert_eq!(parse_point("plain"), None);
        assert_eq!(parse_point("odd[name]"), None);
        let (base, pairs) = parse_point("lr[optimizer.lr=0.001,model.type=mlp]").unwrap();
        assert_eq!(base, "lr");
        assert_eq!(
            pairs,
            [
                ("optimizer.lr".to_string(), "0.001".to_string()),
                ("model.type".to_string(), "mlp".to_string())
            ]
        );
        // A list value keeps its commas; a bracket in the base name is not the point's.
        let (base, pairs) = parse_point("a[1][data.symbols=[\"A\",\"B\"],seed=2]").unwrap();
        assert_eq!(base, "a[1]");
        assert_eq!(pairs[0], ("data.symbols".into(), "[\"A\",\"B\"]".into()));
        assert_eq!(pairs[1], ("seed".into(), "2".into()));
    }

    #[test]
    fn runs_of_one_file_and_base_name_form_a_sweep_with_config_values() {
        let mut experiments: Vec<_> = ["0.001", "0.01", "0.1"]
            .into_iter()
            .map(|lr| {
                let mut e = experiment(&format!("lr[optimizer.lr={lr},model.type=mlp]"), lr);
                e.file = "experiments/lr.yaml".into();
                e
            })
            .collect();
        experiments.push(experiment("alone[seed=1]", "0.1"));
        experiments.push(experiment("plain", "0.1"));
        let (runs, _) = runs(&experiments);
        let found = sweeps(&runs);
        assert_eq!(found.len(), 1);
        let s = &found[0];
        assert_eq!(s.title, "experiments/lr.yaml: lr");
        assert_eq!(s.keys, ["optimizer.lr", "model.type"]);
        assert_eq!(s.points.len(), 3);
        assert_eq!(s.points[1].0, 1);
        // From the resolved config: a number; `model.type` is not in the fixture's config.
        assert_eq!(s.points[1].1[0], Some(serde_json::json!(0.01)));
        assert_eq!(s.points[1].1[1], Some(serde_json::json!("mlp")));
    }
}
