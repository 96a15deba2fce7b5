#!/usr/bin/env python3
"""The skill table of BENCHMARKS.md ("Do the presets learn what can be learned?").

  python3 scripts/skill_table.py HFT CACHE_DIR DATA_DIR

Reads the experiments of benches/skill/ that scripts/skill_table.sh built (HFT is the binary,
CACHE_DIR its store, DATA_DIR the folder of the daily files given to it as data.path) and
prints a markdown table: one row per model preset and data set, with the model's skill
against persistence (`skill.pooled` of metrics.json), its 90% interval (`ci.skill`) and the
Diebold-Mariano p-value against persistence (`dm_test.p_value`).

For the planted AR(p) series it adds the oracle, the best forecast there is, computed here
on the same test windows from the dataset blob in the store (see src/data/blob/mod.rs for its
layout): the log returns are AR(p) with Gaussian innovations of std `noise`
(src/data/synthetic.rs), so given the past, the sum of the next h log returns is normal with
mean m_h (the AR recursion) and variance v_h (from the MA weights), and the minimum-MSE
forecast of the label y_h = C[t+h] / C[t] - 1 is exp(m_h + v_h / 2) - 1. The checks of
issue 17 are printed beside each row: test MSE within 5% of the oracle's and direction
accuracy within 2 points of it (planted), skill >= -0.02 (daily files).

Standard library only: it runs under any python3.
"""
import json
import math
import os
import struct
import subprocess
import sys

MODELS = ["mlp", "lstm", "gru", "transformer", "dit"]
SYMBOLS = ["AAPL", "GOOGL", "MSFT", "NVDA", "ORCL"]


def show(hft, cache, name, folder, extra=()):
    out = subprocess.run(
        [hft, "show", name, folder, "--json", "--cache-dir", cache, *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def read_safetensors(path):
    """{name: (dtype, shape, bytes)} of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        begin, end = t["data_offsets"]
        tensors[name] = (t["dtype"], t["shape"], raw[base + begin : base + end])
    return tensors, json.loads(header["__metadata__"]["hft"])


FORMATS = {"F64": "d", "F32": "f", "U32": "I", "I64": "q", "U8": "B"}


def values(tensor):
    dtype, _, data = tensor
    code = FORMATS[dtype]
    return struct.unpack("<%d%s" % (len(data) // struct.calcsize(code), code), data)


def oracle(shown, cache):
    """The oracle's MSE, direction accuracy and skill on the test windows of a planted
    experiment, and the persistence MSE recomputed on them (a check that they are the
    windows evaluate scored)."""
    signal = shown["config"]["data"]["synthetic"]["signal"]
    if signal.get("seasonal"):
        sys.exit("skill_table.py: the oracle here covers AR(p) signals without a seasonal part")
    ar, noise = signal.get("ar") or [], signal["noise"]
    stage = next(s for s in shown["stages"] if s["id"] == "dataset")
    digest = stage["outputs"]["dataset"]["digest"]
    tensors, meta = read_safetensors(os.path.join(cache, "objects", digest[:2], digest[2:]))
    horizon = meta["prediction_horizon"]
    ends = values(tensors["test/end"])
    symbol = values(tensors["test/symbol"])
    y = values(tensors["test/y"])
    closes = {}
    # MA(inf) weights psi_k and the error variance of the sum of the next h log returns:
    # the innovation of step k (1-based) enters that sum with weight psi_0 + .. + psi_{h-k}.
    psi = []
    for k in range(horizon):
        psi.append(1.0 if k == 0 else sum(a * psi[k - 1 - j] for j, a in enumerate(ar) if j < k))
    cum = [sum(psi[: j + 1]) for j in range(horizon)]
    var = [noise * noise * sum(c * c for c in cum[:h]) for h in range(1, horizon + 1)]
    se = se_persist = 0.0
    moved = right = 0
    for j, e in enumerate(ends):
        s = symbol[j]
        if s not in closes:
            closes[s] = values(tensors["rows/%d/close" % s])
        c = closes[s]
        past = [math.log(c[e - i] / c[e - i - 1]) for i in range(len(ar))]  # most recent first
        m = 0.0
        for h in range(horizon):
            x = sum(a * past[i] for i, a in enumerate(ar))
            past = [x] + past[:-1] if past else past
            m += x
            pred = math.exp(m + var[h] / 2.0) - 1.0
            actual = y[j * horizon + h]
            se += (pred - actual) ** 2
            se_persist += actual * actual
            if h == 0 and actual != 0.0:
                moved += 1
                right += (pred > 0) == (actual > 0) and pred != 0.0
    n = len(y)
    mse, persist = se / n, se_persist / n
    return {
        "mse": mse,
        "persistence_mse": persist,
        "directional_accuracy": right / moved if moved else None,
        "skill": 1.0 - mse / persist,
    }


def fmt(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def row_figures(m):
    skill = m["skill"]["pooled"]
    ci = (m.get("ci") or {}).get("skill") or {}
    dm = m.get("dm_test") or {}
    return skill, ci.get("lower"), ci.get("upper"), dm.get("p_value")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    hft, cache, data = sys.argv[1:]
    print("#### Planted AR(1) returns (`templates/planted_ar1.yaml`: a = 0.3, noise 0.01)")
    print()
    print(
        "| model | skill | 90% interval | DM p | test MSE | MSE / oracle's | dir. acc. "
        "| oracle's dir. acc. | checks |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    oracle_row = None
    for model in MODELS:
        shown = show(hft, cache, "skill_%s_planted" % model, "benches/skill/planted")
        m = shown.get("metrics")
        if not m:
            print("| %s | not built | | | | | | | |" % model)
            continue
        o = oracle(shown, cache)
        if abs(o["persistence_mse"] / m["price"]["persistence_mse"] - 1.0) > 1e-6:
            sys.exit("skill_table.py: the oracle's windows are not the ones evaluated")
        oracle_row = o
        skill, lo, hi, p = row_figures(m)
        ratio = m["price"]["mse"] / o["mse"]
        da, oda = m["price"]["directional_accuracy"], o["directional_accuracy"]
        ok_mse = ratio <= 1.05
        ok_da = da is not None and da >= oda - 0.02
        checks = "%s MSE, %s direction" % ("ok" if ok_mse else "FAIL", "ok" if ok_da else "FAIL")
        print(
            "| %s | %s | [%s, %s] | %s | %.4e | %.3f | %s | %s | %s |"
            % (model, fmt(skill), fmt(lo), fmt(hi), fmt(p), m["price"]["mse"], ratio,
               fmt(da * 100 if da is not None else None, ".1f"), fmt(oda * 100, ".1f"), checks)
        )
    o = oracle_row
    if o is None:
        return
    print(
        "| *oracle* | %.3f | | | %.4e | 1 | | %.1f | |"
        % (o["skill"], o["mse"], o["directional_accuracy"] * 100)
    )
    print()
    print("#### Real daily files (skill >= -0.02 is the check)")
    print()
    print("| model | " + " | ".join(SYMBOLS) + " | checks |")
    print("| --- |" + " --- |" * (len(SYMBOLS) + 1))
    for model in MODELS:
        cells, fails, missing = [], 0, 0
        for symbol in SYMBOLS:
            name = 'skill_%s_daily[data.symbols=["%s"]]' % (model, symbol)
            shown = show(hft, cache, name, "benches/skill/daily", ("--set", "data.path=" + data))
            if not shown.get("metrics"):
                cells.append("not built")
                missing += 1
                continue
            skill, lo, hi, p = row_figures(shown["metrics"])
            fails += skill is None or skill < -0.02
            cells.append("%s [%s, %s] p=%s" % (fmt(skill), fmt(lo), fmt(hi), fmt(p, ".2f")))
        checks = "ok" if fails == 0 else "%d FAIL" % fails
        if missing:
            checks += " (%d not built)" % missing
        print("| %s | %s | %s |" % (model, " | ".join(cells), checks))


if __name__ == "__main__":
    main()
