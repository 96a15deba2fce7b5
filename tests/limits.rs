//! Limits against hostile input, through the real binary: YAML budgets (aliases, depth,
//! size), the config file size limit, template chains, and paths that leave the project.
//! Each is a config error (exit 2) naming the file, line and key, found before anything
//! runs, and quickly.

mod common;

use std::time::{Duration, Instant};

use common::{Project, csv_bars};

const EXPERIMENT: &str = common::LOCAL_BODY;

fn project(experiment: &str) -> Project {
    Project::with_local_data("limits", experiment)
}

/// `hft build ARGS` must fail with exit 2, within `limit`, with every needle in stderr.
fn expect_error(p: &Project, args: &[&str], limit: Duration, needles: &[&str]) {
    let started = Instant::now();
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    let run = p.hft(&all);
    let took = started.elapsed();
    run.assert_user_error(needles);
    assert!(took < limit, "took {took:?}");
}

#[test]
fn billion_laughs_is_rejected_fast() {
    let mut text = String::from("a0: &a0 [lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let p = project(&format!("{EXPERIMENT}{text}"));
    expect_error(
        &p,
        &[],
        Duration::from_secs(10),
        &[
            "experiments/exp.yaml:",
            "YAML too large or too complex: aliases expand to more than 10000 values",
        ],
    );
}

#[test]
fn deep_nesting_is_rejected() {
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    let p = project(&format!("{EXPERIMENT}description: {deep}\n"));
    expect_error(
        &p,
        &[],
        Duration::from_secs(10),
        &["experiments/exp.yaml:10:", "nested deeper than 32 levels"],
    );
}

#[test]
fn oversized_config_files_are_rejected_before_parsing() {
    let padding = format!("# {}\n", "x".repeat(1 << 20));
    let p = project(&format!("{EXPERIMENT}{padding}"));
    expect_error(
        &p,
        &[],
        Duration::from_secs(10),
        &[
            "experiments/exp.yaml:1:1: file is 1048",
            "config files are limited to 1048576 bytes",
        ],
    );
    // A template is a config file too.
    let p = project(&format!("extends: templates/big.yaml\n{EXPERIMENT}"));
    p.write("templates/big.yaml", &padding);
    expect_error(
        &p,
        &[],
        Duration::from_secs(10),
        &[
            "cannot read template templates/big.yaml",
            "limited to 1048576",
        ],
    );
}

#[test]
fn template_chains_are_limited() {
    let p = project(&format!("extends: templates/t0.yaml\n{EXPERIMENT}"));
    for i in 0..20 {
        p.write(
            &format!("templates/t{i}.yaml"),
            &format!("extends: templates/t{}.yaml\n", i + 1),
        );
    }
    p.write("templates/t20.yaml", "seed: 1\n");
    expect_error(
        &p,
        &[],
        Duration::from_secs(10),
        &[
            "templates/t15.yaml:1:",
            "extends: template chain deeper than 16: experiments/exp.yaml -> templates/t0.yaml",
        ],
    );
}

#[test]
fn templates_outside_the_project_are_rejected() {
    let p = project(&format!("{EXPERIMENT}extends: ../../etc/passwd\n"));
    expect_error(
        &p,
        &[],
        Duration::from_secs(10),
        &[
            "experiments/exp.yaml:10:",
            "extends: template ../../etc/passwd is outside the project directory",
        ],
    );
}

#[test]
fn data_outside_the_project_must_be_given_on_the_command_line() {
    let elsewhere = Project::new("limits-data");
    elsewhere.write("AAA.csv", &csv_bars(120, 3));
    let outside = elsewhere.dir.display().to_string();
    let p = project(&EXPERIMENT.replace("path: trainingdata", &format!("path: {outside}")));
    expect_error(
        &p,
        &[],
        Duration::from_secs(10),
        &[
            "experiments/exp.yaml:3:",
            "data.path: `",
            "is outside the project directory",
            &format!("--set data.path={outside}"),
        ],
    );
    let p = project(&EXPERIMENT.replace("path: trainingdata", "path: ../limits-data"));
    expect_error(
        &p,
        &[],
        Duration::from_secs(10),
        &["data.path: `../limits-data`"],
    );

    // The same path given on the command line is the user's explicit choice.
    let set = format!("data.path={outside}");
    let run = p.hft(&["build", "--until", "ingest", "--set", &set]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}
