//! A training with more epochs continuing from the final state of a shorter one
//! ([`TrainOutput::continuation`], [`may_continue`]) ends bit-identical to the longer
//! training run from the start, where the schedule allows it.

use super::tests::{misleading_dataset, opt, quiet, tcfg, toy_dataset};
use super::*;
use crate::config::training::Select;
use crate::model::tests::{as_options, cfg};

/// A run of `t` at peak rate `lr` from `init`, continuing from `from`, keeping its final
/// state: its output (wall-clock speeds zeroed) and the epochs it trained.
fn go(
    lr: f64,
    data: &Dataset,
    m: &ModelConfig,
    t: &TrainingConfig,
    init: &[u8],
    from: Option<Vec<u8>>,
) -> Result<(TrainOutput, Vec<usize>), TrainError> {
    let mut save = |_: usize, _: Vec<u8>| Ok(());
    let resume = Resume {
        from,
        save: &mut save,
        keep_final: true,
    };
    let mut trained = Vec::new();
    let mut out = train_resumable(
        data,
        m,
        &opt(lr),
        t,
        3,
        init,
        &mut |p| {
            if let Some(l) = &p.finished_epoch {
                trained.push(l.epoch);
            }
        },
        Some(resume),
    )?;
    for e in &mut out.log.epochs {
        e.samples_per_sec = 0.0;
    }
    Ok((out, trained))
}

fn with_schedule(t: TrainingConfig, schedule: &str, options: serde_json::Value) -> TrainingConfig {
    TrainingConfig {
        schedule: schedule.into(),
        warmup_steps: Some(2),
        min_lr_ratio: None,
        options: as_options(options),
        ..t
    }
}

/// 2 epochs, then 5 from their final state: epochs 3 to 5 run, and the checkpoint, the log
/// and the final state are the 5-epoch training's, under every schedule whose early rates
/// do not depend on the length, with dropout, accumulation, a moving average, and both
/// `select` rules.
#[test]
fn a_longer_training_continues_from_a_shorter_one_bit_for_bit() {
    let data = toy_dataset([22, 8, 6], 21);
    let m = cfg("mlp");
    assert!(m.dropout > 0.0);
    let init = model::init_weights(&m, 3, 3, 4, 2).unwrap();
    let base = TrainingConfig {
        grad_accum_steps: 2,
        ema_decay: Some(0.9),
        ..tcfg(2, 4)
    };
    let schedules = [
        ("constant", serde_json::json!({})),
        ("step", serde_json::json!({"step": {"step_size": 3}})),
        ("plateau", serde_json::json!({"plateau": {"patience": 0}})),
        // 3 steps an epoch: the warm-up and hold cover the first two epochs.
        (
            "warmup_hold_cosine",
            serde_json::json!({"warmup_hold_cosine": {"hold_steps": 4}}),
        ),
    ];
    for (schedule, options) in schedules {
        for select in [Select::BestVal, Select::Last] {
            let short = TrainingConfig {
                select,
                ..with_schedule(base.clone(), schedule, options.clone())
            };
            let long = TrainingConfig {
                epochs: 5,
                ..short.clone()
            };
            let what = format!("{schedule} {select:?}");
            let (first, _) = go(1e-2, &data, &m, &short, &init, None).unwrap();
            assert_eq!(first.log.epochs.last().unwrap().step, 6, "{what}");
            assert!(may_continue(&data, 1e-2, &long, 6), "{what}");
            let state = first.continuation.unwrap();
            let (continued, trained) = go(1e-2, &data, &m, &long, &init, Some(state)).unwrap();
            let (fresh, all) = go(1e-2, &data, &m, &long, &init, None).unwrap();
            assert_eq!(trained, [3, 4, 5], "{what}");
            assert_eq!(all, [1, 2, 3, 4, 5], "{what}");
            assert!(continued.checkpoint == fresh.checkpoint, "{what}");
            assert_eq!(continued.log, fresh.log, "{what}");
            // The final states too, but for wall-clock speeds in their cursors.
            let state = |o: &TrainOutput| {
                let r = Resumable::decode(o.continuation.as_deref().unwrap()).unwrap();
                (r.checkpoint, r.best)
            };
            assert!(state(&continued) == state(&fresh), "{what}");
        }
    }
}

/// Early stopping: a shorter training it ended, or asked to end after its last epoch, ends
/// the longer one at the same epoch, without training; one it did not end continues, and
/// the longer run stops where a fresh one does.
#[test]
fn a_continued_training_stops_early_where_a_fresh_one_does() {
    const LR: f64 = 5e-2;
    let data = misleading_dataset([24, 8, 0], 16);
    let m = quiet(cfg("mlp"));
    let init = model::init_weights(&m, 3, 3, 4, 2).unwrap();
    for select in [Select::BestVal, Select::Last] {
        let t = |epochs: usize| TrainingConfig {
            patience: Some(2),
            price_weight: 20.0,
            select,
            ..with_schedule(tcfg(epochs, 8), "constant", serde_json::json!({}))
        };
        let (fresh, _) = go(LR, &data, &m, &t(8), &init, None).unwrap();
        let stopped = fresh
            .log
            .stopped_early
            .unwrap_or_else(|| panic!("{:?}", fresh.log));
        assert!((2..6).contains(&stopped), "{:?}", fresh.log);
        // Below the stop, at it (stop asked after the last epoch), and beyond it.
        for b in [stopped - 1, stopped, stopped + 1] {
            let (short, _) = go(LR, &data, &m, &t(b), &init, None).unwrap();
            let (continued, trained) = go(LR, &data, &m, &t(8), &init, short.continuation).unwrap();
            let expected: Vec<usize> = (b + 1..=stopped).collect();
            assert_eq!(trained, expected, "{select:?} from {b}");
            assert!(
                continued.checkpoint == fresh.checkpoint,
                "{select:?} from {b}"
            );
            assert_eq!(continued.log, fresh.log, "{select:?} from {b}");
        }
    }
}

/// Where the rates of the shorter run's steps depend on the run's length (a cosine decay
/// over it, one cycle), the longer run may not continue, and a state offered anyway is
/// refused, naming why; the warm-up alone is the same at every length.
#[test]
fn a_length_shaped_schedule_does_not_continue() {
    let data = toy_dataset([22, 8, 6], 21);
    let m = quiet(cfg("mlp"));
    let init = model::init_weights(&m, 3, 3, 4, 2).unwrap();
    // 6 steps an epoch.
    let short = with_schedule(tcfg(2, 4), "warmup_cosine", serde_json::json!({}));
    let long = TrainingConfig {
        epochs: 5,
        ..short.clone()
    };
    assert!(may_continue(&data, 1e-2, &long, 2));
    assert!(!may_continue(&data, 1e-2, &long, 12));
    let cycle = TrainingConfig {
        warmup_steps: None,
        ..with_schedule(long.clone(), "one_cycle", serde_json::json!({}))
    };
    assert!(!may_continue(&data, 1e-2, &cycle, 1));
    // Neither with max_steps, nor from a longer run.
    let constant = with_schedule(long.clone(), "constant", serde_json::json!({}));
    assert!(!may_continue(&data, 1e-2, &constant, 31));
    let capped = TrainingConfig {
        max_steps: Some(20),
        ..constant
    };
    assert!(!may_continue(&data, 1e-2, &capped, 6));

    let (first, _) = go(1e-2, &data, &m, &short, &init, None).unwrap();
    let Err(TrainError::Resume(why)) = go(1e-2, &data, &m, &long, &init, first.continuation) else {
        panic!("a cosine run continued from a shorter one");
    };
    assert!(
        why.contains("from a run of 12 steps") && why.contains("`warmup_cosine`"),
        "{why}"
    );
}
