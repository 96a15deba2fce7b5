//! The O(n) primitives every feature is built from (returns, EMAs, Wilder RSI, rolling
//! means, standard deviations and extremes), each over a range of bars `from..n` so a
//! continuation replays exactly what a full computation does.

use std::collections::VecDeque;

use super::{WINDOW, WilderAverages};

/// ln(C[t] / C[t-1]) for t in `from..n`; NaN at t = 0.
pub(super) fn log_returns(c: &[f64], from: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(c.len().saturating_sub(from));
    if from == 0 && !c.is_empty() {
        out.push(f64::NAN);
    }
    let pairs = c.get(from.saturating_sub(1)..).unwrap_or_default();
    out.extend(
        pairs
            .iter()
            .zip(pairs.iter().skip(1))
            .map(|(a, b)| libm::log(b / a)),
    );
    out
}

/// C[t] / C[t-k] - 1 for t in `from..n`; NaN for t < k.
pub(super) fn price_change(c: &[f64], k: usize, from: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; k.min(c.len()).saturating_sub(from)];
    let first = from.max(k);
    let old = c.get(first - k..).unwrap_or_default();
    let new = c.get(first..).unwrap_or_default();
    out.extend(old.iter().zip(new).map(|(old, new)| new / old - 1.0));
    out
}

/// Recursive EMA with alpha = 2 / (w + 1) over `x[from..]`, continuing from `prev` (the EMA at
/// `from - 1`) or, without one, seeded with `x[from]`: e[t] = alpha * x[t] + (1 - alpha) * e[t-1].
pub(super) fn ema(x: &[f64], w: usize, from: usize, prev: Option<f64>) -> Vec<f64> {
    let alpha = 2.0 / (w as f64 + 1.0);
    let rest = x.get(from..).unwrap_or_default();
    let mut out = Vec::with_capacity(rest.len());
    let mut e = prev;
    for &v in rest {
        let next = match e {
            Some(e) => alpha * v + (1.0 - alpha) * e,
            None => v,
        };
        e = Some(next);
        out.push(next);
    }
    out
}

/// Wilder RSI over bars `from..n`, continuing from `avg` (the average gain and loss after bar
/// `from - 1`; `None` while they do not exist yet). The first averages are plain means of the
/// first `p` gains/losses (defined at t = p), then avg = ((p - 1) * avg + x) / p. 100 when the
/// average loss is 0. Also returns the averages after the last bar.
pub(super) fn rsi(
    c: &[f64],
    p: usize,
    from: usize,
    mut avg: Option<WilderAverages>,
) -> (Vec<f64>, Option<WilderAverages>) {
    let pf = p as f64;
    let value = |(g, l): WilderAverages| {
        if l == 0.0 {
            100.0
        } else {
            100.0 - 100.0 / (1.0 + g / l)
        }
    };
    let mut out = Vec::with_capacity(c.len().saturating_sub(from));
    let mut prev_close = from.checked_sub(1).and_then(|i| c.get(i)).copied();
    for (t, &close) in c.iter().enumerate().skip(from) {
        avg = match (avg, prev_close) {
            (Some((gain, loss)), Some(prev)) => {
                let d = close - prev;
                Some((
                    ((pf - 1.0) * gain + d.max(0.0)) / pf,
                    ((pf - 1.0) * loss + (-d).max(0.0)) / pf,
                ))
            }
            (None, _) if t == p && p > 0 => {
                let (mut gain, mut loss) = (0.0, 0.0);
                // The first p changes, C[i+1] - C[i] for i < p.
                let first = c.get(..=p).unwrap_or_default();
                for (a, b) in first.iter().zip(first.iter().skip(1)) {
                    let d = b - a;
                    gain += d.max(0.0);
                    loss += (-d).max(0.0);
                }
                Some((gain / pf, loss / pf))
            }
            (other, _) => other,
        };
        prev_close = Some(close);
        out.push(avg.map_or(f64::NAN, value));
    }
    (out, avg)
}

/// The start of the last window, among those ending at or before `max(end, w - 1)`, that
/// re-sums from scratch (its start is a multiple of `w`; see [`rolling_mean_std`]).
pub(super) fn replay_start(end: usize, w: usize) -> usize {
    if w == 0 || end + 1 < w {
        0
    } else {
        (end + 1 - w) / w * w
    }
}

/// Rolling mean and sample standard deviation (n - 1) over `w` values of a series whose
/// element `base + i` is `x[i]`, for window ends `from..base + x.len()` (NaN before index
/// `w - 1`); see [`rolling_scan`]. Without `with_std` only the means are computed and the
/// second vector is empty.
pub(super) fn rolling_mean_std(
    x: &[f64],
    base: usize,
    w: usize,
    with_std: bool,
    from: usize,
) -> (Vec<f64>, Vec<f64>) {
    let len = (base + x.len()).saturating_sub(from);
    let mut mean_out = vec![f64::NAN; len];
    let mut std_out = if with_std {
        vec![f64::NAN; len]
    } else {
        Vec::new()
    };
    rolling_scan(x, base, w, with_std, from, |j, mean, std| {
        mean_out[j] = mean;
        if with_std {
            std_out[j] = std;
        }
    });
    (mean_out, std_out)
}

/// `f(x[t], mean[t])` for `t` in `from..x.len()`, where `mean` is [`rolling_mean_std`]'s
/// over `w` values, without a vector of the means. NaN where the mean is not defined: what
/// `f` must give for a NaN mean, so that this is the zip of the two vectors.
pub(super) fn with_rolling_mean(
    x: &[f64],
    w: usize,
    from: usize,
    f: impl Fn(f64, f64) -> f64,
) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len().saturating_sub(from)];
    rolling_scan(x, 0, w, false, from, |j, mean, _| {
        out[j] = f(x[from + j], mean)
    });
    out
}

/// Slides mean and M2 over `w` values of a series whose element `base + i` is `x[i]`, with
/// Welford's add/remove update, and re-sums the window exactly (two passes) whenever the
/// window starts at a multiple of `w`: so the values from `from` on depend only on elements
/// from [`replay_start`]`(from, w)` on, where `x` must start at the latest, and a computation
/// started there (with `base` > 0) replays the full one bit for bit. Calls `emit(j, mean,
/// std)` for each window end `from + j` (ends before `w - 1` are not emitted); without
/// `with_std` the standard deviation passed is NaN (the means are the same either way).
pub(super) fn rolling_scan(
    x: &[f64],
    base: usize,
    w: usize,
    with_std: bool,
    from: usize,
    mut emit: impl FnMut(usize, f64, f64),
) {
    let n = base + x.len();
    let len = n.saturating_sub(from);
    if w == 0 || n < w {
        return;
    }
    let wf = w as f64;
    let denom = if w > 1 { wf - 1.0 } else { 1.0 };
    let at = |i: usize| {
        i.checked_sub(base)
            .and_then(|i| x.get(i))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let (mut mean, mut m2) = (0.0_f64, 0.0_f64);
    for end in replay_start(from, w) + w - 1..n {
        let start = end + 1 - w;
        if start.is_multiple_of(w) {
            let window = start.checked_sub(base).and_then(|s| x.get(s..s + w));
            match window {
                Some(window) => {
                    mean = window.iter().sum::<f64>() / wf;
                    if with_std {
                        m2 = window.iter().map(|v| (v - mean) * (v - mean)).sum();
                    }
                }
                // `x` starts too late: a caller's bug, surfaced by the finiteness check.
                None => (mean, m2) = (f64::NAN, f64::NAN),
            }
        } else {
            let (old, new) = (at(start - 1), at(end));
            let prev_mean = mean;
            mean += (new - old) / wf;
            if with_std {
                m2 += (new - old) * (new - mean + old - prev_mean);
                m2 = m2.max(0.0);
            }
        }
        if let Some(j) = end.checked_sub(from)
            && j < len
        {
            let std = if with_std {
                (m2 / denom).sqrt()
            } else {
                f64::NAN
            };
            emit(j, mean, std);
        }
    }
}

/// The first bar of the log returns [`volatility`] reads for volatilities of bars `from..n`:
/// its rolling window replays from its last re-summation before `from`.
pub(super) fn volatility_returns_start(from: usize) -> usize {
    replay_start(from.saturating_sub(1), WINDOW) + 1
}

/// Sample standard deviation of the log returns over 20 bars, for bars `from..n`, from
/// `returns`, the log returns of bars `first..n` ([`log_returns`]`(c, first)`, `first` at
/// most [`volatility_returns_start`]`(from)`). The rolling window runs over log returns from
/// bar 1 on (index i = bar - 1) and is replayed from its last re-summation before `from`.
pub(super) fn volatility(returns: &[f64], first: usize, from: usize) -> Vec<f64> {
    let from_index = from.saturating_sub(1);
    let start = replay_start(from_index, WINDOW);
    // `returns` starting too late is a caller's bug, surfaced by the finiteness check.
    let read = (start + 1)
        .checked_sub(first)
        .and_then(|skip| returns.get(skip..))
        .unwrap_or_default();
    // Bar 0 has no volatility: with `from` 0 the output starts with its NaN.
    let shift = usize::from(from == 0);
    let mut out = vec![f64::NAN; (start + read.len()).saturating_sub(from_index) + shift];
    rolling_scan(read, start, WINDOW, true, from_index, |j, _, std| {
        out[j + shift] = std
    });
    out
}

/// Rolling max (`keep(a, b) = a >= b`) or min (`a <= b`) over `w` values with a monotonic
/// deque of indices, for indices `from..n`; defined from index `w - 1` (NaN before). The scan
/// starts `w` values before `from`: a window's extreme is the same value whichever index of
/// it the deque holds, so that is exact.
pub(super) fn rolling_extreme(
    x: &[f64],
    w: usize,
    keep: fn(f64, f64) -> bool,
    from: usize,
) -> Vec<f64> {
    let scan = from.saturating_sub(w);
    let part = x.get(scan..).unwrap_or_default();
    let mut out = Vec::with_capacity(x.len().saturating_sub(from));
    let mut deque: VecDeque<usize> = VecDeque::with_capacity(w + 1);
    for (i, &v) in part.iter().enumerate() {
        while let Some(&back) = deque.back() {
            if part.get(back).is_some_and(|&b| keep(v, b)) {
                deque.pop_back();
            } else {
                break;
            }
        }
        deque.push_back(i);
        if let Some(&front) = deque.front()
            && front + w <= i
        {
            deque.pop_front();
        }
        if scan + i >= from {
            let extreme = match deque.front() {
                Some(&front) if scan + i + 1 >= w => part.get(front).copied(),
                _ => None,
            };
            out.push(extreme.unwrap_or(f64::NAN));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_helpers_match_naive_on_long_series() {
        // Sliding updates with periodic re-summation stay within float noise of the naive sums.
        let x: Vec<f64> = (0..5000)
            .map(|i| 1000.0 + ((i * 7919) % 113) as f64 * 0.37 - (i % 17) as f64)
            .collect();
        let (m, s) = rolling_mean_std(&x, 0, 20, true, 0);
        assert_eq!(rolling_mean_std(&x, 0, 20, false, 0).0[19..], m[19..]);
        let mx = rolling_extreme(&x, 20, |a, b| a >= b, 0);
        let mn = rolling_extreme(&x, 20, |a, b| a <= b, 0);
        for end in 19..x.len() {
            let w = &x[end - 19..=end];
            let mean = w.iter().sum::<f64>() / 20.0;
            let var = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 19.0;
            assert!((m[end] - mean).abs() < 1e-9);
            assert!((s[end] - var.sqrt()).abs() < 1e-9);
            assert_eq!(mx[end], w.iter().cloned().fold(f64::MIN, f64::max));
            assert_eq!(mn[end], w.iter().cloned().fold(f64::MAX, f64::min));
        }
    }
}
