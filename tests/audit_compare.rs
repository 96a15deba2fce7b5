//! `hft audit`'s comparison of a re-executed output with the recorded one, and its
//! `--tolerance` syntax, through the library (`hft::audit`): the difference messages that the
//! end-to-end audit tests never reach because hft reproduces its outputs exactly. Also the
//! stage-line duration format of `hft::term` past a minute.

use hft::audit::{Tolerance, compare};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// A safetensors blob of f32 tensors `(name, shape, values)`.
fn tensors(list: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = list
        .iter()
        .map(|(n, shape, v)| {
            let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.to_string(), shape.clone(), data)
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, shape, data)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn tolerances_parse_and_print_back() {
    for text in ["bitwise", "ulp:4", "metric:0.5"] {
        assert_eq!(Tolerance::parse(text).unwrap().label(), text);
    }
    assert_eq!(
        Tolerance::parse("metric:-1").unwrap_err(),
        "metric:-1: expected a number >= 0"
    );
    assert_eq!(
        Tolerance::parse("metric:inf").unwrap_err(),
        "metric:inf: expected a number >= 0"
    );
    assert_eq!(
        Tolerance::parse("ulp:x").unwrap_err(),
        "ulp:x: expected a whole number"
    );
    assert_eq!(
        Tolerance::parse("exact").unwrap_err(),
        "tolerance `exact`: expected bitwise, ulp:N or metric:EPS"
    );
}

#[test]
fn opaque_bytes_must_be_identical_and_the_first_difference_is_named() {
    let old = [0xffu8, 1, 2, 3];
    assert_eq!(compare("blob", &old, &old, Tolerance::Bitwise), None);
    assert_eq!(
        compare("blob", &old, &[0xff, 1, 9, 3, 4], Tolerance::Metric(1.0)).as_deref(),
        Some("output `blob`: bytes differ from offset 2 (4 vs 5 bytes)")
    );
    // A prefix: the difference is where the shorter one ends.
    assert_eq!(
        compare("blob", &old, &old[..3], Tolerance::Bitwise).as_deref(),
        Some("output `blob`: bytes differ from offset 3 (4 vs 3 bytes)")
    );
}

#[test]
fn tensor_blobs_name_the_tensor_that_differs() {
    let old = tensors(&[("a", vec![2], vec![1.0, 2.0]), ("b", vec![1], vec![3.0])]);
    assert_eq!(compare("w", &old, &old, Tolerance::Bitwise), None);

    let added = tensors(&[
        ("a", vec![2], vec![1.0, 2.0]),
        ("b", vec![1], vec![3.0]),
        ("c", vec![1], vec![0.0]),
    ]);
    assert_eq!(
        compare("w", &old, &added, Tolerance::Bitwise).as_deref(),
        Some("output `w`: tensor `c` is new")
    );

    let removed = tensors(&[("a", vec![2], vec![1.0, 2.0])]);
    assert_eq!(
        compare("w", &old, &removed, Tolerance::Bitwise).as_deref(),
        Some("output `w`: tensor `b` is missing")
    );

    let reshaped = tensors(&[("a", vec![1, 2], vec![1.0, 2.0]), ("b", vec![1], vec![3.0])]);
    let message = compare("w", &old, &reshaped, Tolerance::Bitwise).unwrap();
    assert!(
        message.starts_with("output `w`: tensor `a` changed shape or type (F32 [2] -> F32 [1, 2])"),
        "{message}"
    );

    // One element one ulp off: a difference bitwise, within ulp:1 and within metric:0.001.
    let nudged = tensors(&[
        (
            "a",
            vec![2],
            vec![1.0, f32::from_bits(2.0f32.to_bits() + 1)],
        ),
        ("b", vec![1], vec![3.0]),
    ]);
    let message = compare("w", &old, &nudged, Tolerance::Bitwise).unwrap();
    assert!(
        message.starts_with("output `w`: tensor `a` first differs at element 1;"),
        "{message}"
    );
    assert!(message.ends_with("max 1 ulp"), "{message}");
    assert_eq!(compare("w", &old, &nudged, Tolerance::Ulp(1)), None);
    assert_eq!(compare("w", &old, &nudged, Tolerance::Metric(1e-3)), None);
    assert!(compare("w", &old, &nudged, Tolerance::Metric(0.0)).is_some());
}

#[test]
fn durations_past_a_minute_print_minutes_and_seconds() {
    assert_eq!(hft::term::duration(0.0123), "0.012s");
    assert_eq!(hft::term::duration(3.42), "3.4s");
    assert_eq!(hft::term::duration(125.0), "2m05s");
    assert_eq!(hft::term::duration(3600.4), "60m00s");
}
