//! `hft exec-stage` (what a Slurm job runs) and `--executor slurm` refusing early, through
//! the real binary and without a Slurm: the errors a job or a user sees before anything
//! executes. The Slurm round trip itself is tests/slurm.rs (it needs a Slurm).

mod common;

use common::Project;

fn exec_stage(p: &Project, experiment: &str, stage: &str) -> common::Run {
    p.hft(&[
        "exec-stage",
        "--key",
        "0000",
        "--file",
        "experiments/exp.yaml",
        "--experiment",
        experiment,
        "--stage",
        stage,
        "--cache-dir",
        "cache",
    ])
}

#[test]
fn exec_stage_refuses_an_experiment_or_stage_that_is_not_there() {
    let p = Project::with_local_data("exec-stage-errors", common::LOCAL_EXPERIMENT);
    exec_stage(&p, "nope", "train").assert_user_error(&[
        "experiments/exp.yaml defines no experiment named `nope` (any more); nothing executed",
    ]);
    exec_stage(&p, "exp", "nope").assert_user_error(&["experiment `exp` has no stage `nope`"]);
    assert!(p.action_records().is_empty(), "nothing executed");
}

#[test]
fn a_slurm_build_without_sbatch_says_what_to_install() {
    let p = Project::with_local_data("exec-stage-no-slurm", common::LOCAL_EXPERIMENT);
    let run = p.hft_env(
        &["build", "--executor", "slurm"],
        &[("PATH", "/nonexistent")],
    );
    run.assert_user_error(&[
        "--executor slurm needs Slurm's `sbatch` on PATH",
        "or build with --executor local",
    ]);
    assert!(p.action_records().is_empty(), "nothing executed");
}
