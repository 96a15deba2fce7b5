//! The model zoo and optimizer registry as a user sees them through experiment files: every
//! registered name parses and validates, a setting the selected type does not read is an
//! error naming its key and line, and stage keys change only with what the type reads.

use std::path::Path;

use hft::config::{Experiment, canonical_json, parse_str};
use serde_json::json;

fn parse(text: &str) -> Result<Experiment, hft::config::ConfigError> {
    parse_str(Path::new("exp.yaml"), text, "exp", &hft::model::REGISTRIES)
}

#[test]
fn every_registered_model_and_optimizer_is_accepted() {
    for model in hft::model::MODEL_NAMES {
        for optimizer in hft::optim::OPTIMIZER_NAMES {
            // Only the attention models read num_heads.
            let heads = if ["transformer", "dit"].contains(model) {
                ", num_heads: 2"
            } else {
                ""
            };
            let text = format!(
                "model: {{type: {model}, hidden_size: 8{heads}}}\n\
                 optimizer: {{type: {optimizer}, lr: 0.01}}\n"
            );
            let e = parse(&text).unwrap_or_else(|err| panic!("{model} + {optimizer}: {err}"));
            assert_eq!(
                (e.model.kind.as_str(), e.optimizer.kind.as_str()),
                (*model, *optimizer)
            );
        }
    }
}

#[test]
fn typed_sections_of_each_optimizer_parse_with_defaults_filled() {
    let e = parse(
        "optimizer:\n  type: muon\n  lr: 0.02\n  betas: [0.9, 0.95]\n  muon: {ns_steps: 3, adamw_lr: 0.001}\n",
    )
    .unwrap();
    let o = &e.optimizer.options;
    let muon = &o["muon"];
    assert_eq!(
        (&muon["ns_steps"], &muon["adamw_lr"], &muon["momentum"]),
        (&json!(3), &json!(0.001), &json!(0.95))
    );
    assert_eq!(
        (&o["betas"], &o["eps"]),
        (&json!([0.9, 0.95]), &json!(1e-8))
    );
    let e = parse("optimizer: {type: shampoo, shampoo: {precondition_every: 5}}\n").unwrap();
    let shampoo = &e.optimizer.options["shampoo"];
    assert_eq!(shampoo["precondition_every"], json!(5));
    assert_eq!(shampoo["max_precond_dim"], json!(1024));
    let e = parse("optimizer: {type: sgd, weight_decay: 0, sgd: {nesterov: true}}\n").unwrap();
    assert_eq!(
        e.optimizer.options["sgd"],
        json!({"momentum": 0.9, "nesterov": true})
    );
    // The model's options, defaults filled in, and nothing of other types.
    let e = parse("model: {type: transformer, hidden_size: 8, pooling: mean}\n").unwrap();
    assert_eq!(
        serde_json::Value::Object(e.model.options),
        json!({"num_heads": 4, "ff_size": null, "pooling": "mean", "positions": "sinusoidal"})
    );
    assert!(
        parse("model: {type: gru}\n")
            .unwrap()
            .model
            .options
            .is_empty()
    );
}

#[test]
fn an_option_owned_by_another_optimizer_names_its_key_and_line() {
    let err = parse("optimizer:\n  type: lion\n  lr: 0.0003\n  betas: [0.9, 0.99]\n").unwrap_err();
    assert_eq!(err.key, "optimizer.betas");
    assert_eq!(err.pos.line, 4);
    assert!(
        err.message.contains("optimizer.lion.betas"),
        "{}",
        err.message
    );

    let err = parse("optimizer:\n  type: adamw\n  muon: {ns_steps: 3}\n").unwrap_err();
    assert_eq!((err.key.as_str(), err.pos.line), ("optimizer.muon", 3));

    // A setting no optimizer has is an unknown field, with a suggestion.
    let err = parse("optimizer:\n  type: sgd\n  sgd: {momentun: 0.5}\n").unwrap_err();
    assert_eq!(err.key, "optimizer.sgd.momentun");
    assert!(
        err.message.contains("did you mean `momentum`"),
        "{}",
        err.message
    );

    let err = parse("optimizer: {type: shampoo, shampoo: {precondition_every: 0}}\n").unwrap_err();
    assert_eq!(err.key, "optimizer.shampoo.precondition_every");
}

#[test]
fn an_option_of_another_model_type_names_its_key_line_and_owners() {
    let err = parse("model:\n  type: lstm\n  hidden_size: 8\n  num_heads: 2\n").unwrap_err();
    assert_eq!((err.key.as_str(), err.pos.line), ("model.num_heads", 4));
    assert_eq!(
        err.message,
        "read by transformer and dit, not by lstm; remove it or set model.type"
    );
    let err = parse("model: {type: mlp, dit: {samples: 8}}\n").unwrap_err();
    assert_eq!(err.key, "model.dit");
    assert!(
        err.message.starts_with("read by dit, not by mlp"),
        "{}",
        err.message
    );
    let err = parse("model:\n  type: transformer\n  poolnig: mean\n").unwrap_err();
    assert_eq!((err.key.as_str(), err.pos.line), ("model.poolnig", 3));
    assert!(
        err.message.contains("did you mean `pooling`"),
        "{}",
        err.message
    );
    let err = parse("model:\n  type: dit\n  dit: {samples: 1}\n").unwrap_err();
    assert_eq!((err.key.as_str(), err.pos.line), ("model.dit.samples", 3));
}

#[test]
fn schedule_settings_belong_to_their_schedule() {
    let e = parse("training: {schedule: one_cycle, one_cycle: {pct_start: 0.25}}\n").unwrap();
    assert_eq!(e.training.options["one_cycle"]["pct_start"], json!(0.25));
    assert_eq!(e.training.options["one_cycle"]["div_factor"], json!(25.0));
    let err = parse("training:\n  schedule: one_cycle\n  warmup_steps: 10\n").unwrap_err();
    assert_eq!(
        (err.key.as_str(), err.pos.line),
        ("training.warmup_steps", 3)
    );
    let err = parse("training:\n  schedule: step\n  plateau: {factor: 0.5}\n").unwrap_err();
    assert_eq!(err.key, "training.plateau");
    let err = parse("training: {min_delta: 0.01}\n").unwrap_err();
    assert_eq!(err.key, "training.min_delta");
    parse("training: {patience: 3, min_delta: 0.01, ema_decay: 0.99, grad_accum_steps: 4}\n")
        .unwrap();
}

#[test]
fn devices_and_precisions_outside_the_build_are_config_errors() {
    let err = parse("training:\n  device: tpu\n").unwrap_err();
    assert_eq!((err.key.as_str(), err.pos.line), ("training.device", 2));
    if !cfg!(feature = "cuda") {
        let err = parse("training: {device: 'cuda:1'}\n").unwrap_err();
        assert!(err.message.contains("--features cuda"), "{}", err.message);
    }
    if !cfg!(feature = "wgpu") {
        let err = parse("training: {device: wgpu}\n").unwrap_err();
        assert!(err.message.contains("--features wgpu"), "{}", err.message);
    }
    let err = parse("training: {precision: fp8}\n").unwrap_err();
    assert_eq!(err.key, "training.precision");
    parse("training: {precision: bf16}\n").unwrap();
    parse("training: {precision: f16}\n").unwrap();
}

/// The train key hashes `optimizer.key_value()` and `training.key_value()`: spelling out a
/// default changes nothing, another type's settings never reach the key.
#[test]
fn keys_hold_exactly_what_the_selected_types_read() {
    let key = |text: &str| {
        let e = parse(text).unwrap();
        canonical_json(&(
            e.model.key_value(),
            e.optimizer.key_value(),
            e.training.key_value(),
        ))
    };
    assert_eq!(
        key("optimizer: {type: lion}\n"),
        key("optimizer: {type: lion, lion: {betas: [0.9, 0.99]}}\n")
    );
    assert_ne!(
        key("optimizer: {type: lion}\n"),
        key("optimizer: {type: lion, lion: {betas: [0.95, 0.98]}}\n")
    );
    assert_eq!(
        key("training: {schedule: constant}\n"),
        key("training: {schedule: constant, warmup_steps: 50}\n")
    );
    // A transformer's settings are not an LSTM's business: giving one is an error.
    assert_eq!(
        key("model: {type: transformer}\n"),
        key("model: {type: transformer, num_heads: 4, pooling: last}\n")
    );
    assert_ne!(
        key("model: {type: dit, num_heads: 2}\n"),
        key("model: {type: dit, num_heads: 2, dit: {samples: 64}}\n")
    );
}

/// The stage-key JSON of every model, optimizer and schedule type with non-default options,
/// pinned byte for byte: moving the options into the registries must not move a key.
#[test]
fn key_values_are_pinned_for_every_type() {
    let cases: &[(&str, &str)] = &[
        (
            "model: {type: mlp, hidden_size: 12, num_layers: 3, dropout: 0.2}",
            "{\"dropout\":0.2,\"hidden_size\":12,\"num_layers\":3,\"type\":\"mlp\"}",
        ),
        (
            "model: {type: lstm, hidden_size: 12, num_layers: 3, dropout: 0.0}",
            "{\"dropout\":0.0,\"hidden_size\":12,\"num_layers\":3,\"type\":\"lstm\"}",
        ),
        (
            "model: {type: gru, hidden_size: 16, num_layers: 1, dropout: 0.3}",
            "{\"dropout\":0.3,\"hidden_size\":16,\"num_layers\":1,\"type\":\"gru\"}",
        ),
        (
            "model: {type: transformer, hidden_size: 16, num_heads: 2}",
            "{\"dropout\":0.1,\"ff_size\":64,\"hidden_size\":16,\"num_heads\":2,\"num_layers\":2,\"pooling\":\"last\",\"type\":\"transformer\"}",
        ),
        (
            "model: {type: transformer, hidden_size: 16, num_heads: 8, ff_size: 24, pooling: mean, positions: learned}",
            "{\"dropout\":0.1,\"ff_size\":24,\"hidden_size\":16,\"num_heads\":8,\"num_layers\":2,\"pooling\":\"mean\",\"positions\":\"learned\",\"type\":\"transformer\"}",
        ),
        (
            "model: {type: transformer, hidden_size: 8, num_heads: 2, pooling: attention}",
            "{\"dropout\":0.1,\"ff_size\":32,\"hidden_size\":8,\"num_heads\":2,\"num_layers\":2,\"pooling\":\"attention\",\"type\":\"transformer\"}",
        ),
        (
            "model: {type: dit, hidden_size: 16, num_heads: 4}",
            "{\"dit\":{\"diffusion_steps\":100,\"samples\":16,\"sampling_steps\":10,\"seed\":0},\"dropout\":0.1,\"ff_size\":64,\"hidden_size\":16,\"num_heads\":4,\"num_layers\":2,\"pooling\":\"last\",\"type\":\"dit\"}",
        ),
        (
            "model: {type: dit, hidden_size: 16, num_heads: 2, ff_size: 8, pooling: mean, positions: learned, dit: {diffusion_steps: 50, sampling_steps: 5, samples: 8, seed: 3}}",
            "{\"dit\":{\"diffusion_steps\":50,\"samples\":8,\"sampling_steps\":5,\"seed\":3},\"dropout\":0.1,\"ff_size\":8,\"hidden_size\":16,\"num_heads\":2,\"num_layers\":2,\"pooling\":\"mean\",\"positions\":\"learned\",\"type\":\"dit\"}",
        ),
        (
            "optimizer: {type: adamw, lr: 0.002, weight_decay: 0.1, betas: [0.8, 0.95], eps: 1.0e-6}",
            "{\"betas\":[0.8,0.95],\"eps\":1e-6,\"lr\":0.002,\"type\":\"adamw\",\"weight_decay\":0.1}",
        ),
        (
            "optimizer: {type: sgd, lr: 0.1, weight_decay: 0.0, sgd: {momentum: 0.5, nesterov: true}}",
            "{\"lr\":0.1,\"sgd\":{\"momentum\":0.5,\"nesterov\":true},\"type\":\"sgd\",\"weight_decay\":0.0}",
        ),
        (
            "optimizer: {type: sgd}",
            "{\"lr\":0.001,\"sgd\":{\"momentum\":0.9,\"nesterov\":false},\"type\":\"sgd\",\"weight_decay\":0.01}",
        ),
        (
            "optimizer: {type: lion, lr: 0.0003, lion: {betas: [0.95, 0.98]}}",
            "{\"lion\":{\"betas\":[0.95,0.98]},\"lr\":0.0003,\"type\":\"lion\",\"weight_decay\":0.01}",
        ),
        (
            "optimizer: {type: adafactor, adafactor: {decay_rate: -0.5, clip_threshold: 2.0, scale_parameter: true, relative_step: true}}",
            "{\"adafactor\":{\"clip_threshold\":2.0,\"decay_rate\":-0.5,\"relative_step\":true,\"scale_parameter\":true},\"lr\":0.001,\"type\":\"adafactor\",\"weight_decay\":0.01}",
        ),
        (
            "optimizer: {type: muon, lr: 0.02, betas: [0.9, 0.95], muon: {momentum: 0.9, nesterov: false, ns_steps: 3, adamw_lr: 0.001, adjust_lr: original}}",
            "{\"betas\":[0.9,0.95],\"eps\":1e-8,\"lr\":0.02,\"muon\":{\"adamw_lr\":0.001,\"adjust_lr\":\"original\",\"momentum\":0.9,\"nesterov\":false,\"ns_steps\":3},\"type\":\"muon\",\"weight_decay\":0.01}",
        ),
        (
            "optimizer: {type: muon, lr: 0.02}",
            "{\"betas\":[0.9,0.999],\"eps\":1e-8,\"lr\":0.02,\"muon\":{\"adamw_lr\":0.02,\"adjust_lr\":\"match_rms_adamw\",\"momentum\":0.95,\"nesterov\":true,\"ns_steps\":5},\"type\":\"muon\",\"weight_decay\":0.01}",
        ),
        (
            "optimizer: {type: shampoo, eps: 1.0e-7, shampoo: {momentum: 0.8, beta2: 0.99, epsilon: 1.0e-5, precondition_every: 5, max_precond_dim: 512}}",
            "{\"betas\":[0.9,0.999],\"eps\":1e-7,\"lr\":0.001,\"shampoo\":{\"beta2\":0.99,\"epsilon\":0.00001,\"max_precond_dim\":512,\"momentum\":0.8,\"precondition_every\":5},\"type\":\"shampoo\",\"weight_decay\":0.01}",
        ),
        (
            "training: {schedule: constant, warmup_steps: 7}",
            "{\"batch_size\":32,\"device\":\"cpu\",\"ema_decay\":null,\"epochs\":10,\"grad_accum_steps\":1,\"grad_clip\":1.0,\"label_smoothing\":0.1,\"max_steps\":null,\"patience\":null,\"precision\":\"f32\",\"price_weight\":0.5,\"schedule\":\"constant\",\"warmup_steps\":7}",
        ),
        (
            "training: {schedule: warmup_cosine, warmup_steps: 7, min_lr_ratio: 0.2}",
            "{\"batch_size\":32,\"device\":\"cpu\",\"ema_decay\":null,\"epochs\":10,\"grad_accum_steps\":1,\"grad_clip\":1.0,\"label_smoothing\":0.1,\"max_steps\":null,\"min_lr_ratio\":0.2,\"patience\":null,\"precision\":\"f32\",\"price_weight\":0.5,\"schedule\":\"warmup_cosine\",\"warmup_steps\":7}",
        ),
        (
            "training: {schedule: warmup_hold_cosine, min_lr_ratio: 0.0, warmup_hold_cosine: {hold_steps: 30}}",
            "{\"batch_size\":32,\"device\":\"cpu\",\"ema_decay\":null,\"epochs\":10,\"grad_accum_steps\":1,\"grad_clip\":1.0,\"label_smoothing\":0.1,\"max_steps\":null,\"min_lr_ratio\":0.0,\"patience\":null,\"precision\":\"f32\",\"price_weight\":0.5,\"schedule\":\"warmup_hold_cosine\",\"warmup_hold_cosine\":{\"hold_steps\":30},\"warmup_steps\":50}",
        ),
        (
            "training: {schedule: one_cycle, one_cycle: {pct_start: 0.25, div_factor: 10.0, final_div_factor: 100.0}}",
            "{\"batch_size\":32,\"device\":\"cpu\",\"ema_decay\":null,\"epochs\":10,\"grad_accum_steps\":1,\"grad_clip\":1.0,\"label_smoothing\":0.1,\"max_steps\":null,\"one_cycle\":{\"div_factor\":10.0,\"final_div_factor\":100.0,\"pct_start\":0.25},\"patience\":null,\"precision\":\"f32\",\"price_weight\":0.5,\"schedule\":\"one_cycle\"}",
        ),
        (
            "training: {schedule: step, warmup_steps: 0, step: {step_size: 20, gamma: 0.7}}",
            "{\"batch_size\":32,\"device\":\"cpu\",\"ema_decay\":null,\"epochs\":10,\"grad_accum_steps\":1,\"grad_clip\":1.0,\"label_smoothing\":0.1,\"max_steps\":null,\"patience\":null,\"precision\":\"f32\",\"price_weight\":0.5,\"schedule\":\"step\",\"step\":{\"gamma\":0.7,\"step_size\":20},\"warmup_steps\":0}",
        ),
        (
            "training: {schedule: plateau, min_lr_ratio: 0.05, plateau: {factor: 0.3, patience: 4, threshold: 0.001}, patience: 5, min_delta: 0.01, ema_decay: 0.99}",
            "{\"batch_size\":32,\"device\":\"cpu\",\"ema_decay\":0.99,\"epochs\":10,\"grad_accum_steps\":1,\"grad_clip\":1.0,\"label_smoothing\":0.1,\"max_steps\":null,\"min_delta\":0.01,\"min_lr_ratio\":0.05,\"patience\":5,\"plateau\":{\"factor\":0.3,\"patience\":4,\"threshold\":0.001},\"precision\":\"f32\",\"price_weight\":0.5,\"schedule\":\"plateau\",\"warmup_steps\":50}",
        ),
    ];
    let mut mismatches = Vec::new();
    for (text, want) in cases {
        let e = parse(&format!("{text}\n")).unwrap_or_else(|err| panic!("{text}: {err}"));
        let got = if text.starts_with("model") {
            canonical_json(&e.model.key_value())
        } else if text.starts_with("optimizer") {
            canonical_json(&e.optimizer.key_value())
        } else {
            canonical_json(&e.training.key_value())
        };
        if got != *want {
            mismatches.push(format!("{text}\n  got  {got}\n  want {want}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
