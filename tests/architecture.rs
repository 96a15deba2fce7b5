//! The dependency invariants of ARCHITECTURE.md, checked on the source text: which module may
//! name which, and how long a file may grow. A failure names the file, the line and the rule.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The code lines of a file (comments dropped, so prose may name any module), numbered, up
/// to its `#[cfg(test)]` module: a test may use any module to set up what it checks (eval's
/// tests train a toy model first).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("").to_string()))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect()
}

/// The files of `module` (a folder, a file, or both: `src/x/` and `src/x.rs`).
fn module_files(module: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let dir = src().join(module);
    if dir.is_dir() {
        files.extend(rust_files(&dir));
    }
    let file = src().join(format!("{module}.rs"));
    if file.is_file() {
        files.push(file);
    }
    assert!(!files.is_empty(), "no module {module} under src/");
    files
}

/// Lines of `module` that name any of `forbidden` (`crate::x` paths, or crate names).
fn violations(module: &str, forbidden: &[&str]) -> Vec<String> {
    violations_in(&module_files(module), forbidden)
}

fn violations_in(files: &[PathBuf], forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        for (n, line) in code_lines(file) {
            for f in forbidden {
                let hit = if let Some(name) = f.strip_prefix("crate::") {
                    // `crate::x` also matches `crate::{x, ...}` imports.
                    line.contains(f)
                        || (line.contains("crate::{") && {
                            let after = line.split("crate::{").nth(1).unwrap_or("");
                            after
                                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                                .any(|w| w == name)
                        })
                } else {
                    // A crate is named by a path (`burn::...`, `use burn::{...}`), so prose
                    // in a message ("burn's flex backend") does not count.
                    let path = format!("{f}::");
                    line.match_indices(&path).any(|(i, _)| {
                        !line[..i]
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                    })
                };
                if hit {
                    found.push(format!(
                        "{}:{n}: names `{f}`: {}",
                        file.strip_prefix(src()).unwrap_or(file).display(),
                        line.trim()
                    ));
                }
            }
        }
    }
    found
}

fn assert_none(rule: &str, found: Vec<String>) {
    assert!(found.is_empty(), "{rule}:\n{}", found.join("\n"));
}

#[test]
fn no_source_file_is_over_900_lines() {
    let long: Vec<String> = rust_files(&src())
        .into_iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(&f).unwrap().lines().count();
            (n > 900).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert_none("files over 900 lines (split them along their seams)", long);
}

#[test]
fn the_terminal_module_is_a_leaf() {
    assert_none(
        "`term` imports nothing of hft",
        violations("term", &["crate::"]),
    );
}

#[test]
fn the_store_knows_nothing_about_stages_reports_or_configs() {
    assert_none(
        "`store` knows nothing about the graph, the report, the catalog, configs or the CLI",
        violations(
            "store",
            &[
                "crate::report",
                "crate::graph",
                "crate::catalog",
                "crate::config",
                "crate::cli",
                "crate::model",
                "crate::train",
            ],
        ),
    );
}

#[test]
fn data_is_pure_functions_without_burn() {
    assert_none(
        "`data` knows nothing about burn, the store, the graph, the terminal or the network",
        violations(
            "data",
            &[
                "burn",
                "ureq",
                "crate::store",
                "crate::graph",
                "crate::cli",
                "crate::term",
                "crate::model",
                "crate::train",
            ],
        ),
    );
}

#[test]
fn config_does_not_know_the_registries() {
    assert_none(
        "`config` keeps the shared fields; the model and optimizer registries own their options",
        violations(
            "config",
            &[
                "burn",
                "crate::model",
                "crate::optim",
                "crate::graph",
                "crate::store",
                "crate::cli",
            ],
        ),
    );
}

#[test]
fn evaluation_does_not_depend_on_the_training_loop() {
    assert_none(
        "`eval` reads checkpoints through `checkpoint`, not `train`",
        violations("eval", &["crate::train", "crate::graph", "crate::cli"]),
    );
}

#[test]
fn the_report_renders_without_the_graph() {
    assert_none(
        "`report` (HTML) knows nothing about the graph, the store or the CLI",
        violations("report", &["crate::graph", "crate::store", "crate::cli"]),
    );
}

#[test]
fn the_rules_catch_what_they_claim_to() {
    // The checker itself: a `crate::{...}` import counts, a comment does not, and a crate
    // name counts as a whole word only.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.rs");
    std::fs::write(
        &f,
        "use crate::{graph, store};\n// crate::report in prose\nlet x = burn::T;\nlet y = \
         sunburn::x; \"burn's\";\n#[cfg(test)]\nmod tests { use crate::cli; }\n",
    )
    .unwrap();
    let files = [f];
    assert_eq!(violations_in(&files, &["crate::store"]).len(), 1);
    assert_eq!(violations_in(&files, &["crate::graph"]).len(), 1);
    assert!(violations_in(&files, &["crate::report"]).is_empty());
    assert!(
        violations_in(&files, &["crate::cli"]).is_empty(),
        "test modules are free"
    );
    let burn = violations_in(&files, &["burn"]);
    assert_eq!(burn.len(), 1, "{burn:?}");
    assert!(burn[0].contains(":3:"), "{burn:?}");
}
