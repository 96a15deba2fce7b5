#!/usr/bin/env python3
"""A reference forward pass of an `hft export`, with numpy alone (no torch, no hft).

    python3 tests/interop/forward.py EXPORT_DIR FEATURES_CSV > forecasts.csv

EXPORT_DIR holds `model.safetensors` and `model.json` (the model card). FEATURES_CSV has a
header `symbol,timestamp,close,<feature>...` (the card's `inputs.features` without the
`symbol=` columns, in that order) and one row per bar of the feature table (warm-up rows
already dropped), each symbol's rows oldest first. Every window ending at a row is scored,
as `hft predict` scores them; the output is CSV:

    symbol,timestamp,pred_r1..pred_rP,p_buy,p_hold,p_sell

Covers the mlp, lstm, gru and transformer models (every pooling and position kind).
Everything the script knows about the model comes from the card; tests/interop.rs checks
that it reproduces `hft predict` to 1e-5.
"""

import csv
import json
import math
import sys

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def load_safetensors(path):
    """Tensors of a safetensors file as float64 arrays (the layout: 8-byte header length,
    JSON header of dtypes, shapes and byte offsets, then the data)."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        lo, hi = info["data_offsets"]
        out[name] = np.frombuffer(body[lo:hi], "<f4").reshape(info["shape"]).astype(np.float64)
    return out


def gelu(x):
    return x * 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def linear(w, name, x):
    y = x @ w[name + ".weight"]
    bias = w.get(name + ".bias")
    return y if bias is None else y + bias


def heads(w, h):
    head = lambda which: linear(w, f"heads.{which}.out", gelu(linear(w, f"heads.{which}.hidden", h)))
    return head("price"), head("action")


def mlp(w, card, x):
    h = x.reshape(x.shape[0], -1)
    for i in range(card["model"]["num_layers"]):
        h = gelu(linear(w, f"layers.{i}", h))
    return h


def lstm(w, card, x):
    seq = x
    for i in range(card["model"]["num_layers"]):
        d = w[f"layers.{i}.hidden.weight"].shape[0]
        h = np.zeros((x.shape[0], d))
        c = np.zeros_like(h)
        outs = []
        for t in range(seq.shape[1]):
            g = linear(w, f"layers.{i}.input", seq[:, t]) + h @ w[f"layers.{i}.hidden.weight"]
            gi, gf, gc, go = (g[:, k * d : (k + 1) * d] for k in range(4))
            c = sigmoid(gf) * c + sigmoid(gi) * np.tanh(gc)
            h = sigmoid(go) * np.tanh(c)
            outs.append(h)
        seq = np.stack(outs, axis=1)
    return seq[:, -1]


def gru(w, card, x):
    seq = x
    for i in range(card["model"]["num_layers"]):
        d = w[f"layers.{i}.hidden.weight"].shape[0]
        h = np.zeros((x.shape[0], d))
        outs = []
        for t in range(seq.shape[1]):
            a = linear(w, f"layers.{i}.input", seq[:, t])
            b = linear(w, f"layers.{i}.hidden", h)
            r = sigmoid(a[:, :d] + b[:, :d])
            z = sigmoid(a[:, d : 2 * d] + b[:, d : 2 * d])
            n = np.tanh(a[:, 2 * d :] + r * b[:, 2 * d :])
            h = (1.0 - z) * n + z * h
            outs.append(h)
        seq = np.stack(outs, axis=1)
    return seq[:, -1]


def layer_norm(w, name, x, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[name + ".gamma"] + w[name + ".beta"]


def sinusoids(length, d):
    table = np.zeros((length, d))
    for pos in range(length):
        for col in range(d):
            angle = pos / 10000.0 ** ((col - col % 2) / d)
            table[pos, col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)
    return table.astype(np.float32).astype(np.float64)


def transformer(w, card, x):
    m = card["model"]
    d, heads_n, eps = m["hidden_size"], m["num_heads"], m["layer_norm_epsilon"]
    batch, seq, _ = x.shape
    pos = w["pos_embedding"][:seq] if m["positions"] == "learned" else sinusoids(seq, d)
    h = linear(w, "input", x) + pos
    dk = d // heads_n
    for i in range(m["num_layers"]):
        p = f"encoder.layers.{i}"
        a = layer_norm(w, p + ".norm_2", h, eps)
        split = lambda t: t.reshape(batch, seq, heads_n, dk).transpose(0, 2, 1, 3)
        q, k, v = (split(linear(w, f"{p}.mha.{n}", a)) for n in ("query", "key", "value"))
        att = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(dk), axis=-1)
        ctx = (att @ v).transpose(0, 2, 1, 3).reshape(batch, seq, d)
        h = h + linear(w, p + ".mha.output", ctx)
        f = layer_norm(w, p + ".norm_1", h, eps)
        h = h + linear(w, p + ".pwff.linear_outer", gelu(linear(w, p + ".pwff.linear_inner", f)))
    h = layer_norm(w, "norm", h, eps)
    if m["pooling"] == "attention":
        scores = softmax(h @ w["pool_query"] / math.sqrt(d), axis=1)
        return (h * scores[:, :, None]).sum(axis=1)
    if m["pooling"] == "mean":
        return h.mean(axis=1)
    return h[:, -1]


ENCODERS = {"mlp": mlp, "lstm": lstm, "gru": gru, "transformer": transformer}


def windows(card, close, values, symbol):
    """The normalised windows ending at every row of one symbol's feature rows: the
    relative-price transform and the train-split statistics of the card, in float64, cast
    to float32 as hft feeds them."""
    inp = card["inputs"]
    s = inp["sequence_length"]
    ids = [n[len("symbol=") :] for n in inp["features"] if n.startswith("symbol=")]
    if ids:
        one_hot = np.array([[1.0 if i == symbol else 0.0 for i in ids]] * len(values))
        values = np.concatenate([values, one_hot], axis=1)
    rel = np.array(inp["relative"])
    mean, std = np.array(inp["norm_mean"]), np.array(inp["norm_std"])
    out = []
    for end in range(s - 1, len(values)):
        rows = values[end - s + 1 : end + 1]
        rows = np.where(rel, rows / close[end] - 1.0, rows)
        out.append(((rows - mean) / std).astype(np.float32))
    return np.array(out, dtype=np.float64).reshape(-1, s, len(mean))


def main(export_dir, features_csv):
    card = json.load(open(f"{export_dir}/model.json"))
    w = load_safetensors(f"{export_dir}/model.safetensors")
    kind = card["model"]["type"]
    if kind not in ENCODERS:
        sys.exit(f"forward.py covers {', '.join(ENCODERS)}, not {kind}")
    rows = list(csv.reader(open(features_csv)))
    header, body = rows[0], rows[1:]
    names = [n for n in card["inputs"]["features"] if not n.startswith("symbol=")]
    if header[3:] != names:
        sys.exit(f"feature columns {header[3:]} are not the model's {names}")
    target_std = np.array(card["outputs"]["price"]["target_std"])
    out = csv.writer(sys.stdout, lineterminator="\n")
    horizon = card["model"]["horizon"]
    out.writerow(["symbol", "timestamp"] + [f"pred_r{h}" for h in range(1, horizon + 1)]
                 + ["p_buy", "p_hold", "p_sell"])
    symbols = list(dict.fromkeys(r[0] for r in body))
    s = card["inputs"]["sequence_length"]
    for symbol in symbols:
        mine = [r for r in body if r[0] == symbol]
        close = np.array([float(r[2]) for r in mine])
        values = np.array([[float(v) for v in r[3:]] for r in mine])
        x = windows(card, close, values, symbol)
        if len(x) == 0:
            continue
        price, action = heads(w, ENCODERS[kind](w, card, x))
        returns = price * target_std
        probs = softmax(action, axis=1)
        for i, end in enumerate(range(s - 1, len(mine))):
            out.writerow([symbol, mine[end][1]] + [repr(float(v)) for v in returns[i]]
                         + [repr(float(v)) for v in probs[i]])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
