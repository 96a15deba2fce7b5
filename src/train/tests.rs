//! The training loop's tests, and the fixtures the other modules' tests share (a
//! learnable toy dataset, configs, a `run` from fresh weights).

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use super::batches::{Targets, target_std};
use super::rng::SplitMix64;
use super::*;
use crate::config::training::Select;
use crate::data::Split;
use crate::model::tests::{cfg, label, variants};
use crate::optim::OPTIMIZER_NAMES;

/// A learnable toy dataset: 4 steps of 3 features, horizon 2, two symbols alternating,
/// returns driven by the last step's first feature.
pub(crate) fn toy_dataset(sizes: [usize; 3], seed: u64) -> Dataset {
    toy_windows(sizes, 4, 3, seed)
}

pub(crate) fn toy_windows(sizes: [usize; 3], seq: usize, k: usize, seed: u64) -> Dataset {
    let p = 2;
    let mut rng = SplitMix64(seed);
    let mut unit = move || (rng.next() >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0;
    let mut split = |n: usize| {
        let mut s = Split {
            n,
            ..Split::default()
        };
        for i in 0..n {
            let window: Vec<f32> = (0..seq * k).map(|_| unit()).collect();
            let signal = window[(seq - 1) * k];
            let r1 = 0.02 * signal;
            s.y.extend([r1, 0.03 * signal + 0.002 * unit()]);
            s.x.dense_mut().unwrap().extend(window);
            s.action.push(if r1 > 0.01 {
                0
            } else if r1 < -0.01 {
                2
            } else {
                1
            });
            s.symbol.push((i % 2) as u32);
            s.timestamp.push(1_700_000_000 + (i / 2) as i64 * 86_400);
        }
        s
    };
    Dataset {
        symbols: vec!["AAA".into(), "BBB".into()],
        feature_names: (0..k).map(|i| format!("f{i}")).collect(),
        sequence_length: seq,
        prediction_horizon: p,
        bar_seconds: 86_400,
        norm_mean: vec![0.0; k],
        norm_std: vec![1.0; k],
        train: split(sizes[0]),
        val: split(sizes[1]),
        test: split(sizes[2]),
    }
}

/// [`toy_dataset`] with the validation split's returns (and actions) reversed: what the
/// model learns from train makes its validation loss worse, so the best epoch is the first.
pub(crate) fn misleading_dataset(sizes: [usize; 3], seed: u64) -> Dataset {
    let mut data = toy_dataset(sizes, seed);
    for y in &mut data.val.y {
        *y = -*y;
    }
    for a in &mut data.val.action {
        *a = 2 - *a;
    }
    data
}

pub(crate) fn opt(lr: f64) -> OptimizerConfig {
    OptimizerConfig {
        lr,
        weight_decay: 0.0,
        ..OptimizerConfig::default()
    }
}

pub(crate) fn tcfg(epochs: usize, batch_size: usize) -> TrainingConfig {
    TrainingConfig {
        epochs,
        batch_size,
        warmup_steps: Some(0),
        min_lr_ratio: Some(1.0),
        ..TrainingConfig::default()
    }
}

/// Trains `model` from fresh seeded weights.
pub(crate) fn run(
    data: &Dataset,
    model: &ModelConfig,
    opt: &OptimizerConfig,
    t: &TrainingConfig,
    seed: u64,
) -> Result<TrainOutput, TrainError> {
    let dims = Dims::of(data);
    let init = model::init_weights(
        model,
        seed,
        dims.num_features,
        dims.sequence_length,
        dims.horizon,
    )?;
    train(data, model, opt, t, seed, &init, &mut |_| {})
}

pub(crate) fn quiet(m: ModelConfig) -> ModelConfig {
    ModelConfig {
        dropout: 0.0,
        num_layers: 1,
        ..m
    }
}

/// `f` on a rayon pool of `threads` threads (flex runs its parallel ops on the current
/// pool): for checking that results do not depend on the thread count.
pub(crate) fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(f)
}

/// Loss targets of `data`'s train split with price weight 0.5.
pub(super) fn targets(data: &Dataset, smoothing: f64) -> Targets {
    Targets {
        std: target_std(&data.train, data.prediction_horizon),
        smoothing,
        price_weight: 0.5,
    }
}

/// A gradient as flat f32 values, for comparing two gradient sets.
pub(crate) fn flat_grad(grads: &GradientsParams, p: &crate::model::ParamMeta) -> Vec<f32> {
    fn values<const D: usize>(g: Option<Tensor<D>>) -> Vec<f32> {
        g.map_or_else(Vec::new, |g| g.into_data().iter::<f32>().collect())
    }
    match p.rank {
        1 => values(grads.get::<1>(p.id)),
        2 => values(grads.get::<2>(p.id)),
        _ => values(grads.get::<3>(p.id)),
    }
}

#[test]
fn each_model_trains_and_its_loss_falls() {
    let data = toy_dataset([64, 16, 8], 1);
    for m in variants() {
        let out = run(&data, &quiet(m.clone()), &opt(1e-2), &tcfg(10, 16), 3).unwrap();
        let log = &out.log;
        let (first, last) = (&log.epochs[0], &log.epochs[9]);
        let name = label(&m);
        assert!(last.train_loss < 0.8 * first.train_loss, "{name}: {log:#?}");
        assert_eq!((log.total_steps, last.step), (40, 40));
        assert!(log.best_epoch.is_some() && log.final_val_loss == last.val_loss);
    }
}

/// A learning rate each optimizer makes progress with on the toy problem.
fn optimizer(kind: &str) -> OptimizerConfig {
    let lr = match kind {
        "sgd" => 0.1,
        "lion" => 5e-3,
        "muon" => 3e-2,
        _ => 1e-2,
    };
    OptimizerConfig {
        kind: kind.to_string(),
        lr,
        weight_decay: 0.01,
        ..OptimizerConfig::default()
    }
}

/// The old system's `test_all_optimizers`, for real: every model with every optimizer
/// trains, its loss falls, and two runs (on 1 and 2 threads) give identical bytes.
#[test]
fn every_model_with_every_optimizer_trains_deterministically() {
    let data = toy_dataset([24, 8, 0], 7);
    let t = TrainingConfig {
        warmup_steps: Some(2),
        min_lr_ratio: Some(0.5),
        ..tcfg(10, 8)
    };
    let in_pool = |threads: usize, m: &ModelConfig, o: &OptimizerConfig| {
        in_pool(threads, || run(&data, m, o, &t, 5))
    };
    let mut slow = Vec::new();
    // Every model type; the transformer's pooling and position variants are covered by
    // the per-model tests.
    let models = model::MODEL_NAMES.iter().map(|kind| cfg(kind));
    for m in models {
        let m = quiet(m);
        for kind in OPTIMIZER_NAMES {
            let name = format!("{} + {kind}", label(&m));
            let o = optimizer(kind);
            let one = in_pool(1, &m, &o).unwrap_or_else(|e| panic!("{name}: {e}"));
            let log = &one.log;
            let (first, last) = (&log.epochs[0], &log.epochs[log.epochs.len() - 1]);
            if last.train_loss >= 0.9 * first.train_loss {
                slow.push(format!(
                    "{name}: loss {:.4} -> {:.4}",
                    first.train_loss, last.train_loss
                ));
            }
            let ckpt = Checkpoint::decode(&one.checkpoint).unwrap();
            assert_eq!(ckpt.meta.optimizer, *kind);
            assert!(
                !read_optimizer(&ckpt.optimizer).unwrap().is_empty(),
                "{name}"
            );
            let two = in_pool(2, &m, &o).unwrap();
            assert!(
                one.checkpoint == two.checkpoint,
                "{name}: 1 and 2 threads differ"
            );
        }
    }
    assert!(
        slow.is_empty(),
        "the loss hardly fell:\n{}",
        slow.join("\n")
    );
}

#[test]
fn training_is_bit_identical_across_runs_and_thread_counts() {
    let data = toy_dataset([24, 8, 0], 3);
    let t = TrainingConfig {
        max_steps: Some(7),
        warmup_steps: Some(2),
        min_lr_ratio: Some(0.1),
        ..tcfg(1, 8)
    };
    let in_pool = |threads: usize, m: &ModelConfig| {
        in_pool(threads, || run(&data, m, &opt(1e-2), &t, 9))
            .unwrap()
            .checkpoint
    };
    for m in variants() {
        let kind = label(&m);
        let one = in_pool(1, &m);
        assert_eq!(one, in_pool(1, &m), "{kind}: two runs differ");
        assert_eq!(one, in_pool(2, &m), "{kind}: 1 and 2 threads differ");
    }
}

/// Big enough for flex to run matmuls on several threads (batched attention products
/// and the feed-forward gemm pass its parallel thresholds).
#[test]
fn a_parallel_sized_transformer_is_thread_count_independent() {
    let data = toy_windows([64, 0, 0], 32, 4, 6);
    let model_cfg = ModelConfig {
        hidden_size: 64,
        ..cfg("transformer")
    };
    let t = TrainingConfig {
        max_steps: Some(2),
        ..tcfg(1, 64)
    };
    let in_pool = |threads: usize| {
        in_pool(threads, || run(&data, &model_cfg, &opt(1e-3), &t, 2))
            .unwrap()
            .checkpoint
    };
    assert!(in_pool(1) == in_pool(2), "1 and 2 threads differ");
}

#[test]
fn checkpoint_records_the_final_state() {
    let data = toy_dataset([20, 4, 0], 4);
    let t = TrainingConfig {
        max_steps: Some(7),
        select: Select::Last,
        ..tcfg(99, 8)
    };
    let init = model::init_weights(&cfg("mlp"), 11, 3, 4, 2).unwrap();
    let mut calls = Vec::new();
    let mut epoch_ends = 0;
    let out = train(
        &data,
        &cfg("mlp"),
        &opt(1e-3),
        &t,
        11,
        &init,
        &mut |p| match p.finished_epoch {
            Some(_) => epoch_ends += 1,
            None => calls.push((p.epoch, p.step)),
        },
    )
    .unwrap();
    assert_eq!(calls.len(), 7);
    assert_eq!(calls.last(), Some(&(3, 7)));
    assert_eq!(epoch_ends, 3, "one report after each epoch's validation");
    let ckpt = Checkpoint::decode(&out.checkpoint).unwrap();
    assert_eq!(
        (ckpt.meta.step, ckpt.meta.epochs, ckpt.meta.seed),
        (7, 3, 11)
    );
    assert_eq!(out.log.epochs.len(), 3);
    assert_eq!(ckpt.meta.target_std.len(), 2);
    assert!(!read_optimizer(&ckpt.optimizer).unwrap().is_empty());
    assert_eq!(Checkpoint::decode(&ckpt.encode()).unwrap(), ckpt);
    assert!(Checkpoint::decode(&out.checkpoint[1..]).is_err());
}

#[test]
fn bad_inputs_are_clear_errors() {
    let mut data = toy_dataset([8, 0, 0], 5);
    data.train.y[3] = f32::NAN;
    let err = run(&data, &cfg("mlp"), &opt(1e-3), &tcfg(1, 8), 1)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("diverged at epoch 1, step 1"),
        "{err}"
    );

    // An update that overflows f32 leaves infinite weights after the last step.
    let data = toy_dataset([8, 0, 0], 5);
    let t = TrainingConfig {
        max_steps: Some(1),
        grad_clip: 0.0,
        ..tcfg(1, 8)
    };
    let err = run(&data, &cfg("mlp"), &opt(1e39), &t, 1).err().unwrap();
    assert!(err.to_string().contains("is not finite"), "{err}");

    let other = model::init_weights(&cfg("lstm"), 1, 3, 4, 2).unwrap();
    let err = train(
        &data,
        &cfg("mlp"),
        &opt(1e-3),
        &tcfg(1, 8),
        1,
        &other,
        &mut |_| {},
    );
    assert!(
        err.err()
            .unwrap()
            .to_string()
            .contains("built for a `lstm`")
    );

    let mut short = toy_dataset([8, 0, 0], 5);
    short.train.x.dense_mut().unwrap().pop();
    let err = run(&short, &cfg("mlp"), &opt(1e-3), &tcfg(1, 8), 1)
        .err()
        .unwrap();
    assert!(err.to_string().contains("`x` has 95 values"), "{err}");

    let empty = toy_dataset([0, 0, 0], 5);
    assert!(run(&empty, &cfg("mlp"), &opt(1e-3), &tcfg(1, 8), 1).is_err());
}

/// Every parameter of a checkpoint's `weights` (or `ema`) record, flattened, by path.
fn params_of(model_cfg: &ModelConfig, data: &Dataset, record: &[u8]) -> Vec<(String, Vec<f32>)> {
    let net = model::load(model_cfg, Dims::of(data), record, &Device::flex()).unwrap();
    let values = net.flat_params();
    net.params()
        .into_iter()
        .map(|p| {
            let v = values[&p.id].clone().into_data().iter::<f32>().collect();
            (p.path, v)
        })
        .collect()
}

fn max_abs_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|((pa, va), (pb, vb))| {
            assert_eq!(pa, pb);
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

/// Two micro-batches of 8 per step match one batch of 16: same loss, same weights, up
/// to float rounding; the schedule counts optimizer steps.
#[test]
fn gradient_accumulation_matches_one_big_batch() {
    let data = toy_dataset([40, 8, 0], 12);
    for m in [cfg("mlp"), cfg("lstm")] {
        let m = quiet(m);
        // `last`: the trained weights, whatever epoch 0 scored.
        let big = TrainingConfig {
            warmup_steps: Some(2),
            min_lr_ratio: Some(0.1),
            grad_clip: 0.0,
            select: Select::Last,
            ..tcfg(2, 16)
        };
        let small = TrainingConfig {
            batch_size: 8,
            grad_accum_steps: 2,
            ..big.clone()
        };
        let a = run(&data, &m, &opt(1e-2), &big, 4).unwrap();
        let b = run(&data, &m, &opt(1e-2), &small, 4).unwrap();
        // 40 windows: steps of 16, 16 and 8 windows per epoch, either way.
        assert_eq!((a.log.total_steps, b.log.total_steps), (6, 6));
        for (x, y) in a.log.epochs.iter().zip(&b.log.epochs) {
            assert_eq!((x.step, x.lr), (y.step, y.lr));
            assert!((x.train_loss - y.train_loss).abs() < 1e-5, "{x:?} vs {y:?}");
            let (vx, vy) = (x.val_loss.unwrap(), y.val_loss.unwrap());
            assert!((vx - vy).abs() < 1e-5, "{vx} vs {vy}");
        }
        let (ca, cb) = (
            Checkpoint::decode(&a.checkpoint).unwrap(),
            Checkpoint::decode(&b.checkpoint).unwrap(),
        );
        let diff = max_abs_diff(
            &params_of(&m, &data, &ca.weights),
            &params_of(&m, &data, &cb.weights),
        );
        assert!(diff < 1e-5, "{}: weights differ by {diff}", m.kind);
        assert!(
            a.checkpoint != b.checkpoint,
            "accumulation changed nothing at all?"
        );
    }
}

#[test]
fn early_stopping_stops_after_patience_epochs_without_improvement() {
    let data = toy_dataset([24, 8, 0], 13);
    // A rate too small to move the validation loss by min_delta: the initial weights
    // (epoch 0) set the best, epochs 1 and 2 fail to beat it, patience 2 stops after
    // epoch 2 of 20.
    let t = TrainingConfig {
        patience: Some(2),
        min_delta: Some(0.01),
        ..tcfg(20, 8)
    };
    let out = run(&data, &cfg("mlp"), &opt(1e-7), &t, 2).unwrap();
    assert_eq!(out.log.stopped_early, Some(2));
    assert_eq!(out.log.epochs.len(), 2);
    let ckpt = Checkpoint::decode(&out.checkpoint).unwrap();
    // Early stopping restores the best epoch's state (`select: best_val`)...
    let best = out.log.best_epoch.unwrap();
    assert_eq!(out.log.selected_epoch, Some(best));
    assert_eq!((ckpt.meta.epochs, ckpt.meta.step), (best, 3 * best));
    // ...and `last` keeps the state it stopped in.
    let last = TrainingConfig {
        select: Select::Last,
        ..t.clone()
    };
    let out = run(&data, &cfg("mlp"), &opt(1e-7), &last, 2).unwrap();
    let ckpt = Checkpoint::decode(&out.checkpoint).unwrap();
    assert_eq!((ckpt.meta.epochs, ckpt.meta.step), (2, 6));
    assert_eq!(out.log.selected_epoch, Some(2));
    // A run that keeps improving does not stop.
    let t = TrainingConfig {
        patience: Some(2),
        ..tcfg(4, 8)
    };
    let out = run(&data, &quiet(cfg("mlp")), &opt(1e-2), &t, 2).unwrap();
    assert_eq!((out.log.stopped_early, out.log.epochs.len()), (None, 4));
}

#[test]
fn ema_weights_differ_from_raw_and_are_the_ones_evaluated() {
    let data = toy_dataset([24, 8, 6], 14);
    let m = cfg("mlp");
    let decay = 0.9;
    // One step: the average is exactly decay * init + (1 - decay) * raw.
    let one = TrainingConfig {
        max_steps: Some(1),
        ema_decay: Some(decay),
        ..tcfg(1, 8)
    };
    let out = run(&data, &m, &opt(1e-2), &one, 6).unwrap();
    let ckpt = Checkpoint::decode(&out.checkpoint).unwrap();
    let init = model::init_weights(&m, 6, 3, 4, 2).unwrap();
    let (_, init) = model::read_weights(&init).unwrap();
    let (init, raw, ema) = (
        params_of(&m, &data, init),
        params_of(&m, &data, &ckpt.weights),
        params_of(&m, &data, ckpt.ema.as_deref().unwrap()),
    );
    let mut worst = 0.0f64;
    for ((i, r), e) in init.iter().zip(&raw).zip(&ema) {
        for ((a, b), c) in i.1.iter().zip(&r.1).zip(&e.1) {
            let want = decay * f64::from(*a) + (1.0 - decay) * f64::from(*b);
            worst = worst.max((want - f64::from(*c)).abs());
        }
    }
    assert!(worst < 1e-6, "average off by {worst}");

    let t = TrainingConfig {
        ema_decay: Some(decay),
        select: Select::Last,
        ..tcfg(3, 8)
    };
    let out = run(&data, &m, &opt(1e-2), &t, 6).unwrap();
    let ckpt = Checkpoint::decode(&out.checkpoint).unwrap();
    assert_eq!(ckpt.meta.ema_decay, Some(decay));
    let ema = ckpt.ema.clone().unwrap();
    assert!(
        max_abs_diff(
            &params_of(&m, &data, &ema),
            &params_of(&m, &data, &ckpt.weights)
        ) > 1e-4
    );
    // Validation and evaluation read the average.
    let as_plain = |weights: Vec<u8>| {
        Checkpoint {
            meta: CheckpointMeta {
                ema_decay: None,
                ..ckpt.meta.clone()
            },
            weights,
            optimizer: ckpt.optimizer.clone(),
            ema: None,
        }
        .encode()
    };
    let predict = |bytes: &[u8]| crate::eval::predict(&data, &m, bytes, &data.test).unwrap();
    let evaluated = predict(&out.checkpoint);
    assert_eq!(evaluated, predict(&as_plain(ema.clone())));
    assert_ne!(evaluated, predict(&as_plain(ckpt.weights.clone())));
    let dims = Dims::of(&data);
    let targets = Targets {
        std: ckpt.meta.target_std.clone(),
        smoothing: t.label_smoothing,
        price_weight: t.price_weight,
    };
    let averaged = model::load(&m, dims, &ema, &Device::flex()).unwrap();
    let val = mean_loss(
        averaged.as_ref(),
        &data.val,
        dims,
        &targets,
        &Device::flex(),
    )
    .unwrap();
    assert_eq!(out.log.selected_val_loss, val);
}

/// With `best_val` the checkpoint is the state after the epoch with the lowest validation
/// loss (here the first: validation rewards the opposite of what train teaches), the very
/// bytes a run of that many epochs ends with; with `last`, the last epoch's.
#[test]
fn the_checkpoint_holds_the_selected_epoch() {
    let data = misleading_dataset([24, 8, 0], 16);
    let m = quiet(cfg("mlp"));
    let with = |select: Select, epochs: usize| TrainingConfig {
        select,
        ema_decay: Some(0.5),
        price_weight: 20.0,
        ..tcfg(epochs, 8)
    };
    let best = run(&data, &m, &opt(5e-2), &with(Select::BestVal, 4), 5).unwrap();
    let last = run(&data, &m, &opt(5e-2), &with(Select::Last, 4), 5).unwrap();
    let losses: Vec<f64> = best.log.epochs.iter().filter_map(|l| l.val_loss).collect();
    let b = best.log.best_epoch.unwrap();
    assert!(b < 4, "val losses {losses:?}");
    let losses_of = |log: &TrainLog| -> Vec<(f64, Option<f64>)> {
        log.epochs
            .iter()
            .map(|l| (l.train_loss, l.val_loss))
            .collect()
    };
    assert_eq!(
        losses_of(&best.log),
        losses_of(&last.log),
        "the same training"
    );
    assert_eq!(
        (best.log.select.as_str(), best.log.selected_epoch),
        ("best_val", Some(b))
    );
    assert_eq!(best.log.selected_val_loss, Some(losses[b - 1]));
    assert_eq!(
        (last.log.select.as_str(), last.log.selected_epoch),
        ("last", Some(4))
    );
    assert_eq!(last.log.selected_val_loss, Some(losses[3]));
    // A constant learning rate: the first b epochs of four are a run of b epochs.
    let short = run(&data, &m, &opt(5e-2), &with(Select::Last, b), 5).unwrap();
    assert!(
        best.checkpoint == short.checkpoint,
        "best_val keeps epoch {b}"
    );
    let ckpt = Checkpoint::decode(&best.checkpoint).unwrap();
    assert_eq!((ckpt.meta.epochs, ckpt.meta.step), (b, 3 * b));
    assert!(ckpt.ema.is_some());
    assert!(last.checkpoint != best.checkpoint);
    assert_eq!(Checkpoint::decode(&last.checkpoint).unwrap().meta.epochs, 4);
}

/// Epoch 0 is the initial weights' validation loss: a run none of whose epochs beats it
/// keeps the initial weights (whose heads forecast no move) with `best_val`, rather than an
/// epoch that fitted what does not generalise; `last` keeps the last epoch regardless.
#[test]
fn a_run_that_never_beats_its_initial_weights_keeps_them() {
    let data = misleading_dataset([24, 8, 0], 16);
    let m = quiet(cfg("mlp"));
    let t = TrainingConfig {
        price_weight: 20.0,
        ..tcfg(3, 8)
    };
    let out = run(&data, &m, &opt(5e-2), &t, 5).unwrap();
    let log = &out.log;
    let v0 = log.initial_val_loss.unwrap();
    assert!(
        log.epochs.iter().all(|e| e.val_loss.unwrap() > v0),
        "{v0} {:?}",
        log.epochs
    );
    assert_eq!((log.best_epoch, log.selected_epoch), (Some(0), Some(0)));
    assert_eq!(
        (log.best_val_loss, log.selected_val_loss),
        (Some(v0), Some(v0))
    );
    let ckpt = Checkpoint::decode(&out.checkpoint).unwrap();
    let init = model::init_weights(&m, 5, 3, 4, 2).unwrap();
    assert!(ckpt.weights == model::read_weights(&init).unwrap().1);
    assert_eq!((ckpt.meta.epochs, ckpt.meta.step), (0, 0));
    let last = TrainingConfig {
        select: Select::Last,
        ..t
    };
    let last = run(&data, &m, &opt(5e-2), &last, 5).unwrap();
    assert_eq!(last.log.selected_epoch, Some(3));
    assert_eq!(last.log.initial_val_loss, Some(v0));
    assert_eq!(Checkpoint::decode(&last.checkpoint).unwrap().meta.epochs, 3);
}

/// Without validation windows `best_val` keeps the last epoch and the log says why.
#[test]
fn best_val_without_validation_windows_keeps_the_last_epoch() {
    let data = toy_dataset([16, 0, 0], 17);
    let m = quiet(cfg("mlp"));
    let out = run(&data, &m, &opt(1e-2), &tcfg(2, 8), 1).unwrap();
    let last = TrainingConfig {
        select: Select::Last,
        ..tcfg(2, 8)
    };
    assert!(out.checkpoint == run(&data, &m, &opt(1e-2), &last, 1).unwrap().checkpoint);
    assert_eq!(
        (out.log.select.as_str(), out.log.selected_epoch),
        ("last", Some(2))
    );
    assert!(out.log.select_note.as_deref().unwrap().contains("no"));
}

#[test]
fn plateau_and_early_stopping_need_validation_windows() {
    let data = toy_dataset([16, 0, 0], 15);
    let t = TrainingConfig {
        schedule: "plateau".into(),
        ..tcfg(2, 8)
    };
    let err = run(&data, &cfg("mlp"), &opt(1e-3), &t, 1).err().unwrap();
    assert!(
        err.to_string().contains("val split has no windows"),
        "{err}"
    );
    let t = TrainingConfig {
        patience: Some(1),
        ..tcfg(2, 8)
    };
    assert!(run(&data, &cfg("mlp"), &opt(1e-3), &t, 1).is_err());
}
