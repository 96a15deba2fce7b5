#!/usr/bin/env python3
"""Reference values for src/eval/stats.rs, computed independently with numpy and scipy.

Run from the repository root:  python3 scripts/stats_reference.py
It writes tests/fixtures/stats/inputs.json (a small fixed series, seeded) and
tests/fixtures/stats/expected.json (the values the Rust unit tests compare against).
Definitions (textbook, written out here rather than shared with the Rust code):
- Sharpe: mean / sample std (ddof=1) * sqrt(periods per year).
- PSR (Bailey & Lopez de Prado 2012): Phi((sr - sr*) sqrt(n-1) / sqrt(1 - g3 sr + (g4-1)/4 sr^2)),
  sr per period, g3 the skewness and g4 the (non-excess) kurtosis, population moments.
- DSR (Bailey & Lopez de Prado 2014): PSR against sr0 = sqrt(V) ((1-gamma) Phi^-1(1-1/N)
  + gamma Phi^-1(1 - 1/(N e))), gamma the Euler-Mascheroni constant.
- Diebold-Mariano (1995) with the Harvey-Leybourne-Newbold (1997) correction: d = a - b,
  autocovariances gamma_k = 1/n sum (d_t - dbar)(d_{t-k} - dbar) for k < h,
  V = (gamma_0 + 2 sum_{k=1}^{h-1} gamma_k) / n, DM = dbar / sqrt(V),
  DM* = DM sqrt((n + 1 - 2h + h(h-1)/n) / n), p = 2 P(T_{n-1} > |DM*|).
- PBO by CSCV (Bailey, Borwein, Lopez de Prado & Zhu 2017), for src/eval/stats/pbo.rs:
  returns[trial][block]; an odd block count drops its first block, more than 16 blocks are
  grouped into 16 runs of adjacent ones (run g: blocks g*S//16 .. (g+1)*S//16); for every
  choice of half the blocks as in-sample (itertools.combinations order), the trial with the
  best in-sample Sharpe (first on ties) is ranked out of sample (scipy rankdata, ties
  averaged), w = rank / (N + 1), logit ln(w / (1 - w)); PBO = share of logits <= 0. The
  degradation slope is np.polyfit(in-sample SR, out-of-sample SR, 1)[0] of the selected
  trials; the probability of loss the share of negative out-of-sample SRs.
"""
import itertools
import json
import os

import numpy as np
from scipy import stats

OUT = os.path.join("tests", "fixtures", "stats")


def make_inputs():
    rng = np.random.default_rng(17)
    n = 60
    # Skewed, fat-tailed returns (so PSR's moment terms matter).
    returns = 0.001 + 0.01 * rng.standard_t(5, n) + 0.004 * (rng.random(n) < 0.1)
    actual = rng.normal(0.0, 1.0, n)
    # Model A: a noisy forecast with MA(1) errors; model B: persistence (predicts zero).
    e = rng.normal(0.0, 0.8, n + 1)
    pred_a = 0.3 * actual + e[1:] + 0.5 * e[:-1]
    loss_a = (pred_a - actual) ** 2
    loss_b = actual**2
    return {
        "returns": [float(v) for v in returns],
        "loss_a": [float(v) for v in loss_a],
        "loss_b": [float(v) for v in loss_b],
        "pbo": make_pbo_inputs(),
    }


def make_pbo_inputs():
    """Sweeps of per-bar returns, trial x block x bar (a separate generator, so the series
    above keep their values)."""
    rng = np.random.default_rng(2017)

    def sweep(trials, blocks, bars, drift=None):
        r = rng.normal(0.0, 0.01, (trials, blocks, bars))
        if drift is not None:
            r += np.asarray(drift)[:, None, None]
        return [[[float(v) for v in b] for b in t] for t in r]

    return {
        # No trial has an edge: selection is noise.
        "no_skill": sweep(10, 8, 25),
        # Trial 3 earns 0.5 sd a bar more than the others: it is selected and stays best.
        "one_skilled": sweep(10, 8, 25, [0.005 if i == 3 else 0.0 for i in range(10)]),
        # Odd blocks (the first is dropped) and a mild, graded edge.
        "odd_blocks": sweep(4, 7, 12, [0.0, 0.001, 0.002, 0.003]),
        # More than 16 blocks: grouped into 16 runs.
        "many_blocks": sweep(3, 19, 4),
    }


def pbo_sharpe(r):
    r = np.asarray(r)
    if len(r) < 2:
        return 0.0
    sd = np.std(r, ddof=1)
    return float(np.mean(r) / sd) if sd > 0 else 0.0


def pbo_cscv(m):
    n_trials, s = len(m), len(m[0])
    first = s % 2
    se = s - first
    if se <= 16:
        groups = [list(range(b, b + 1)) for b in range(first, s)]
    else:
        groups = [list(range(first + g * se // 16, first + (g + 1) * se // 16)) for g in range(16)]
    blocks = [[np.concatenate([m[t][b] for b in g]) for g in groups] for t in range(n_trials)]
    nb = len(groups)
    logits, sel_is, sel_oos = [], [], []
    for combo in itertools.combinations(range(nb), nb // 2):
        rest = [b for b in range(nb) if b not in combo]
        is_sr = [pbo_sharpe(np.concatenate([blocks[t][b] for b in combo])) for t in range(n_trials)]
        oos_sr = [pbo_sharpe(np.concatenate([blocks[t][b] for b in rest])) for t in range(n_trials)]
        best = int(np.argmax(is_sr))
        rank = stats.rankdata(oos_sr)[best]
        w = rank / (n_trials + 1)
        logits.append(float(np.log(w / (1 - w))))
        sel_is.append(is_sr[best])
        sel_oos.append(oos_sr[best])
    out = {
        "trials": n_trials,
        "blocks": nb,
        "combinations": len(logits),
        "pbo": float(np.mean(np.asarray(logits) <= 0)),
        "degradation_slope": float(np.polyfit(sel_is, sel_oos, 1)[0]),
        "probability_of_loss": float(np.mean(np.asarray(sel_oos) < 0)),
    }
    # Each logit only for small cases (12,870 of them would swamp the fixture).
    if len(logits) <= 100:
        out["logits"] = logits
    return out


def sharpe(r, ppy):
    return float(np.mean(r) / np.std(r, ddof=1) * np.sqrt(ppy))


def psr(sr, n, skew, kurt, bench):
    z = (sr - bench) * np.sqrt(n - 1) / np.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    return float(stats.norm.cdf(z))


def expected_max_sr(trials, var):
    g = np.euler_gamma
    return float(
        np.sqrt(var)
        * ((1 - g) * stats.norm.ppf(1 - 1 / trials) + g * stats.norm.ppf(1 - 1 / (trials * np.e)))
    )


def dm(a, b, h):
    d = np.asarray(a) - np.asarray(b)
    n = len(d)
    dbar = d.mean()
    c = d - dbar
    gam = [np.sum(c[k:] * c[: n - k]) / n for k in range(h)]
    v = (gam[0] + 2 * sum(gam[1:])) / n
    stat = dbar / np.sqrt(v)
    stat *= np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    p = 2 * stats.t.sf(abs(stat), n - 1)
    return {"horizon": h, "statistic": float(stat), "p_value": float(p)}


def main():
    os.makedirs(OUT, exist_ok=True)
    inp = make_inputs()
    r = np.array(inp["returns"])
    sr = float(np.mean(r) / np.std(r, ddof=1))
    skew = float(stats.skew(r, bias=True))
    kurt = float(stats.kurtosis(r, fisher=False, bias=True))
    n = len(r)
    exp = {
        "sharpe_252": sharpe(r, 252.0),
        "sharpe_per_period": sr,
        "skewness": skew,
        "kurtosis": kurt,
        "psr": [
            {"sr": sr, "n": n, "skew": skew, "kurt": kurt, "bench": b, "value": psr(sr, n, skew, kurt, b)}
            for b in [0.0, 0.05, -0.1]
        ]
        + [{"sr": 0.1, "n": 372, "skew": -0.5, "kurt": 6.0, "bench": 0.0, "value": psr(0.1, 372, -0.5, 6.0, 0.0)}],
        "dsr": [
            {
                "sr": s, "n": nn, "skew": sk, "kurt": ku, "trials": N, "var": V,
                "sr0": expected_max_sr(N, V),
                "value": psr(s, nn, sk, ku, expected_max_sr(N, V)),
            }
            for (s, nn, sk, ku, N, V) in [
                (sr, n, skew, kurt, 10, 0.002),
                (0.12, 1000, -0.3, 5.0, 100, 0.0005),
                (0.05, 250, 0.0, 3.0, 2, 0.01),
            ]
        ],
        "dm": [dm(inp["loss_a"], inp["loss_b"], h) for h in [1, 2, 5]],
        "pbo": {name: pbo_cscv(m) for name, m in inp["pbo"].items()},
        "t_cdf": [
            {"t": t, "df": df, "cdf": float(stats.t.cdf(t, df)), "sf": float(stats.t.sf(t, df))}
            for df in [1.0, 2.5, 5.0, 30.0, 59.0, 371.0]
            for t in [-6.0, -2.0, -0.5, 0.0, 0.3, 1.7, 4.0]
        ],
        "normal_cdf": [
            {"x": x, "cdf": float(stats.norm.cdf(x))} for x in [-8.0, -3.0, -1.2, 0.0, 0.4, 2.5, 6.0]
        ],
        "normal_quantile": [
            {"p": p, "x": float(stats.norm.ppf(p))}
            for p in [1e-10, 1e-4, 0.01, 0.02425, 0.05, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999, 1 - 1e-9]
        ],
    }
    with open(os.path.join(OUT, "inputs.json"), "w") as f:
        json.dump(inp, f, indent=1)
        f.write("\n")
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(exp, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
