//! The model zoo and optimizer registry as a user sees them through experiment files: every
//! registered name parses and validates, a setting the selected type does not read is an
//! error naming its key and line, and stage keys change only with what the type reads.

use std::path::Path;

use hft::config::{Experiment, canonical_json, parse_str};

fn parse(text: &str) -> Result<Experiment, hft::config::ConfigError> {
    parse_str(Path::new("exp.yaml"), text, "exp")
}

#[test]
fn every_registered_model_and_optimizer_is_accepted() {
    for model in hft::model::MODEL_NAMES {
        for optimizer in hft::optim::OPTIMIZER_NAMES {
            let text = format!(
                "model: {{type: {model}, hidden_size: 8, num_heads: 2}}\n\
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
    let muon = e.optimizer.muon();
    assert_eq!(
        (muon.ns_steps, muon.adamw_lr, muon.momentum),
        (3, Some(0.001), 0.95)
    );
    let e = parse("optimizer: {type: shampoo, shampoo: {precondition_every: 5}}\n").unwrap();
    assert_eq!(e.optimizer.shampoo().precondition_every, 5);
    assert_eq!(e.optimizer.shampoo().max_precond_dim, 1024);
    let e = parse("optimizer: {type: sgd, weight_decay: 0, sgd: {nesterov: true}}\n").unwrap();
    assert_eq!(
        (e.optimizer.sgd().momentum, e.optimizer.sgd().nesterov),
        (0.9, true)
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
fn schedule_settings_belong_to_their_schedule() {
    let e = parse("training: {schedule: one_cycle, one_cycle: {pct_start: 0.25}}\n").unwrap();
    assert_eq!(e.training.one_cycle.unwrap().pct_start, 0.25);
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
    // The dit settings are not an LSTM's business.
    assert_eq!(
        key("model: {type: lstm}\n"),
        key("model: {type: lstm, dit: {samples: 64}}\n")
    );
    assert_ne!(
        key("model: {type: dit, num_heads: 2}\n"),
        key("model: {type: dit, num_heads: 2, dit: {samples: 64}}\n")
    );
}
