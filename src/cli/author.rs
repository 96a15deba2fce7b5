//! `hft new`, `hft config show` and `hft man`: writing experiment files, reading one back
//! resolved (every value with where it was set), and the manual pages of the command line.

use std::path::{Path, PathBuf};

use super::{Cli, Loaded, Outcome, Select, fail, load_experiments};
use crate::graph::{self, Database, ExperimentSource};
use crate::term;

/// `hft new NAME --template T`.
pub fn new_experiment(name: &str, template: &str, dir: &Path) -> Outcome {
    let template_path = if template.ends_with(".yaml") || template.ends_with(".yml") {
        PathBuf::from(template)
    } else {
        PathBuf::from("templates").join(format!("{template}.yaml"))
    };
    if !template_path.is_file() {
        let known: Vec<String> = std::fs::read_dir("templates")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.strip_suffix(".yaml").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let hint = match crate::config::did_you_mean(template, known.iter().map(String::as_str)) {
            Some(best) => format!("; did you mean `{best}`?"),
            None => format!("; templates: {}", known.join(", ")),
        };
        return fail(&format!("no template {}{hint}", template_path.display()));
    }
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid_name {
        return fail(&format!(
            "`{name}` is not a file-friendly name (letters, digits, _ - .)"
        ));
    }
    let file = dir.join(format!("{name}.yaml"));
    if file.exists() {
        return fail(&format!("{} already exists", file.display()));
    }
    let text = format!(
        "# Created by `hft new {name} --template {template}`.\n\
         # Every key of {} applies; keys set here win (see `hft config show {name}`).\n\
         extends: {}\n\
         name: {name}\n\
         description: \"\"\n",
        template_path.display(),
        template_path.display()
    );
    // The new file must resolve: a broken template is reported now, not at the next build.
    let db = Database::default();
    let source = ExperimentSource::new(&db, file.clone(), text.clone(), Vec::new(), None);
    if let Err(e) = graph::parse_experiments(&db, source) {
        eprintln!("error: {e}");
        return Outcome::BadInput;
    }
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&file, text)) {
        return fail(&format!("cannot write {}: {e}", file.display()));
    }
    println!("wrote {}", file.display());
    Outcome::Ok
}

/// `hft config show EXP`: every resolved value and where it was set.
pub fn config_show(experiment: &str, select: &Select) -> Outcome {
    let db = Database::default();
    let mut select_all = Select {
        paths: select.paths.clone(),
        overrides: select.overrides.clone(),
        filters: select.filters.clone(),
    };
    let as_file = Path::new(experiment);
    if as_file.is_file() {
        select_all.paths = vec![as_file.to_path_buf()];
    }
    let loaded = match load_experiments(&db, &select_all) {
        Ok(l) => l,
        Err(o) => return o,
    };
    let chosen: Vec<&Loaded> = if as_file.is_file() {
        loaded.iter().collect()
    } else {
        loaded
            .iter()
            .filter(|l| l.plan.name == experiment)
            .collect()
    };
    if chosen.is_empty() {
        let names: Vec<&str> = loaded.iter().map(|l| l.plan.name.as_str()).collect();
        let hint = match crate::config::did_you_mean(experiment, names.iter().copied()) {
            Some(best) => format!("; did you mean `{best}`?"),
            None => String::new(),
        };
        return fail(&format!("no experiment named `{experiment}`{hint}"));
    }
    for l in chosen {
        let mut rows = Vec::new();
        let json = serde_json::to_value(&l.parsed.experiment).unwrap_or_default();
        for (path, value) in crate::config::json_leaves(&json, false) {
            let value = value.to_string();
            let from = match l.parsed.locations.get(&path) {
                Some(origin) => origin.to_string(),
                None if path == "name" => "the file name".to_string(),
                None => "default".to_string(),
            };
            // A long value (a feature list) wraps onto lines of its own, so one value does
            // not widen every line to its length.
            let mut pieces = wrap_value(&value, CONFIG_VALUE_WIDTH).into_iter();
            let first = pieces.next().unwrap_or_default();
            rows.push(vec![format!("{path}:"), first, format!("# {from}")]);
            rows.extend(pieces.map(|p| vec![String::new(), p, String::new()]));
        }
        println!("# {} ({})", l.plan.name, l.file.display());
        term::print_block(&term::table(&rows));
    }
    Outcome::Ok
}

/// The widest value `config show` prints on one line.
const CONFIG_VALUE_WIDTH: usize = 48;

/// `value` cut into lines of at most `width` characters, after a `, ` where it can be (a
/// single longer item gets a line of its own).
fn wrap_value(value: &str, width: usize) -> Vec<String> {
    if value.chars().count() <= width {
        return vec![value.to_string()];
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for item in value.split_inclusive(", ") {
        if !line.is_empty() && line.chars().count() + item.chars().count() > width {
            lines.push(std::mem::take(&mut line).trim_end().to_string());
        }
        line.push_str(item);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `hft man DIR`: roff pages generated from the clap definitions.
pub fn man_pages(dir: &Path) -> Outcome {
    use clap::CommandFactory;
    let written =
        std::fs::create_dir_all(dir).and_then(|_| clap_mangen::generate_to(Cli::command(), dir));
    match written {
        Ok(()) => {
            println!("wrote man pages to {}", dir.display());
            Outcome::Ok
        }
        Err(e) => {
            eprintln!("error: cannot write man pages to {}: {e}", dir.display());
            Outcome::StageFailed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wrap_value;

    #[test]
    fn long_values_wrap_after_commas() {
        assert_eq!(wrap_value("[1, 2]", 48), ["[1, 2]"]);
        let features = "[\"close\", \"log_return\", \"ma_20\", \"rsi_14\", \"bb_position\"]";
        let lines = wrap_value(features, 24);
        assert!(lines.iter().all(|l| l.chars().count() <= 24), "{lines:?}");
        assert!(lines.len() > 1);
        assert_eq!(lines.join(" "), features);
    }
}
