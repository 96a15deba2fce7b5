#!/usr/bin/env python3
"""`hft predict` beside PyTorch inference on lstm-ref (BENCHMARKS.md, "Inference").

    scripts/predict_bench.py [--windows N] [--runs R]

Needs a release `hft` (target/release/hft, or --hft), and a Python with torch and numpy
(run the script with it). Steps, in a scratch folder (--work):

1. `hft build` of benches/ref/lstm_ref.yaml (the reference LSTM, trained as in the
   training benchmark), then `hft export` of it.
2. Latency: `hft predict lstm_ref --symbols B1 --from LAST` (one symbol's latest window) as
   a whole process, the forecasts record removed before each run so that every run scores;
   and the same once cached.
3. Throughput: N windows of random-walk minute bars (4 symbols) scored by
   `hft predict lstm_ref --data DIR -o FILE` as a whole process (ingest, features, windows,
   the model, the CSV); PyTorch (eval mode, no grad, the exported weights in nn.LSTM and
   nn.Linear) on the same normalised windows, built from hft's feature rows
   (tests/interop.rs `bench_feature_rows`) as tests/interop/forward.py builds them, timed
   over the forward passes alone, batches of 256 as hft. The forecasts of both are compared.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "interop"))
import forward  # noqa: E402  (the numpy reference: safetensors reader, window builder)


def run(cmd, cwd, **kw):
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, **kw)


def timed(cmd, cwd):
    t = time.perf_counter()
    out = run(cmd, cwd)
    return time.perf_counter() - t, out


def forget_forecasts(work):
    """Removes the `predict` action records, so that the next `hft predict` scores."""
    folder = f"{work}/cache/actions"
    for name in os.listdir(folder):
        if json.load(open(f"{folder}/{name}")).get("stage") == "predict":
            os.remove(f"{folder}/{name}")


def write_bars(path, n, seed):
    """Random-walk one-minute OHLCV bars, `timestamp` in Unix seconds."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0005, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0005, n)))
    vol = rng.integers(1_000, 100_000, n)
    ts = 1_600_000_000 + 60 * np.arange(n)
    with open(path, "w") as f:
        f.write("timestamp,open,high,low,close,volume\n")
        for row in zip(ts, open_, high, low, close, vol):
            f.write("%d,%.6f,%.6f,%.6f,%.6f,%d\n" % row)


class TorchLstm(nn.Module):
    """lstm-ref from the export: PyTorch's gate order (i, f, g, o) is hft's."""

    def __init__(self, w, card):
        super().__init__()
        m = card["model"]
        d, layers = m["hidden_size"], m["num_layers"]
        self.lstm = nn.LSTM(m["num_features"], d, layers, batch_first=True)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        for i in range(layers):
            getattr(self.lstm, f"weight_ih_l{i}").data = t(w[f"layers.{i}.input.weight"].T)
            getattr(self.lstm, f"weight_hh_l{i}").data = t(w[f"layers.{i}.hidden.weight"].T)
            getattr(self.lstm, f"bias_ih_l{i}").data = t(w[f"layers.{i}.input.bias"])
            getattr(self.lstm, f"bias_hh_l{i}").data = torch.zeros(4 * d)

        def head(name, out):
            seq = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, out))
            seq[0].weight.data = t(w[f"heads.{name}.hidden.weight"].T)
            seq[0].bias.data = t(w[f"heads.{name}.hidden.bias"])
            seq[2].weight.data = t(w[f"heads.{name}.out.weight"].T)
            seq[2].bias.data = t(w[f"heads.{name}.out.bias"])
            return seq

        self.price = head("price", m["horizon"])
        self.action = head("action", 3)
        self.target_std = t(np.array(card["outputs"]["price"]["target_std"]))

    def forward(self, x):
        h = self.lstm(x)[0][:, -1]
        return self.price(h) * self.target_std, self.action(h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hft", default=os.path.join(REPO, "target", "release", "hft"))
    ap.add_argument("--windows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default="/tmp/hft-predict-bench")
    args = ap.parse_args()
    hft = os.path.abspath(args.hft)
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(f"{work}/experiments")
    shutil.copy(f"{REPO}/benches/ref/lstm_ref.yaml", f"{work}/experiments/lstm_ref.yaml")
    secs, _ = timed([hft, "build", "-q"], work)
    print(f"setup: lstm-ref built in {secs:.0f} s", file=sys.stderr)
    run([hft, "export", "lstm_ref", "-o", "export"], work)
    card = json.load(open(f"{work}/export/model.json"))

    # Latency: one symbol's latest window, the whole process.
    doc = json.loads(run([hft, "predict", "lstm_ref", "--symbols", "B1", "--json"], work).stdout)
    last = doc["forecasts"][-1]["timestamp"]
    one = [hft, "predict", "lstm_ref", "--symbols", "B1", "--from", last, "--json"]
    scored, cached = [], []
    run(one, work)
    for _ in range(args.runs):
        forget_forecasts(work)
        secs, out = timed(one, work)
        assert not json.loads(out.stdout)["cached"]
        scored.append(secs)
        secs, out = timed(one, work)
        assert json.loads(out.stdout)["cached"]
        cached.append(secs)

    # Throughput: N windows of new bars.
    names = [n for n in card["inputs"]["features"] if not n.startswith("symbol=")]
    s = card["inputs"]["sequence_length"]
    per = args.windows // 4 + card["inputs"]["warm_up_bars"] + s - 1
    os.makedirs(f"{work}/data")
    for i, sym in enumerate(["B1", "B2", "B3", "B4"]):
        write_bars(f"{work}/data/{sym}.csv", per, i)
    hft_secs = []
    for r in range(args.runs):
        secs, _ = timed([hft, "predict", "lstm_ref", "--data", "data", "-o", "hft.csv"], work)
        hft_secs.append(secs)
        forget_forecasts(work)  # every run scores
    env = dict(os.environ, HFT_BENCH_DATA=f"{work}/data", HFT_BENCH_FEATURES=",".join(names),
               HFT_BENCH_OUT=f"{work}/features.csv")
    # The debug test build: a release one would rebuild every dependency with the
    # dev-dependencies' features, and the rows are the same.
    subprocess.run(["cargo", "test", "-q", "--test", "interop", "--",
                    "--ignored", "bench_feature_rows"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    w = forward.load_safetensors(f"{work}/export/model.safetensors")
    rows = [r.split(",") for r in open(f"{work}/features.csv").read().splitlines()[1:]]
    xs, keys = [], []
    for sym in ["B1", "B2", "B3", "B4"]:
        mine = [r for r in rows if r[0] == sym]
        close = np.array([float(r[2]) for r in mine])
        values = np.array([[float(v) for v in r[3:]] for r in mine])
        xs.append(forward.windows(card, close, values, sym).astype(np.float32))
        keys += [(sym, int(r[1])) for r in mine[s - 1:]]
    x = torch.from_numpy(np.concatenate(xs))
    model = TorchLstm(w, card).eval()
    torch.set_num_threads(os.cpu_count())
    torch_secs, outs = [], None
    with torch.no_grad():
        model(x[:256])
        for _ in range(args.runs):
            t = time.perf_counter()
            outs = [model(x[i:i + 256]) for i in range(0, len(x), 256)]
            torch_secs.append(time.perf_counter() - t)
        t = time.perf_counter()
        model(x[-1:])
        torch_one = time.perf_counter() - t
    price = torch.cat([o[0] for o in outs]).numpy()
    ours = {}
    for line in open(f"{work}/hft.csv").read().splitlines()[1:]:
        c = line.split(",")
        ours[(c[0], c[1])] = float(c[3])
    import datetime
    iso = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    scale = np.abs(price[:, 0]).max()
    diff = max(abs(ours[(k[0], iso(k[1]))] - price[i, 0]) for i, k in enumerate(keys)) / scale
    n = len(x)
    med = lambda v: sorted(v)[len(v) // 2]
    print(f"| hft predict, one symbol's latest window (whole process, scored) | {med(scored) * 1e3:.1f} ms |")
    print(f"| hft predict, the same again (whole process, cached) | {med(cached) * 1e3:.1f} ms |")
    print(f"| PyTorch, one window (forward alone, in process) | {torch_one * 1e3:.2f} ms |")
    print(f"| hft predict, {n:,} windows (whole process: bars, features, windows, model, CSV) | "
          f"{n / med(hft_secs):,.0f} windows/s |")
    print(f"| PyTorch {torch.__version__}, the same windows (forward alone, eval, no grad) | "
          f"{n / med(torch_secs):,.0f} windows/s |")
    print(f"| largest difference of pred_r1, hft vs PyTorch, of its scale | {diff:.1e} |")


if __name__ == "__main__":
    main()
