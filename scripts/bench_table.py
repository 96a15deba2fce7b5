#!/usr/bin/env python3
"""The markdown results table of BENCHMARKS.md, from the figures scripts/bench_peers.sh gathered.

  python3 scripts/bench_table.py HFT_TSV PEERS_TSV

Both files hold one figure per line, tab-separated: id, metric, value, rss_kib (or -), runs,
note. HFT_TSV is what `cargo bench --bench suite` appends with HFT_BENCH_TSV set; PEERS_TSV is
what bench_peers.sh measured for PyTorch, pandas, DVC and b3sum. Every ratio is hft / peer,
both measured in the same session. A figure missing from either file (a workload that was
not selected) leaves its row out. Standard library only: it runs under any python3.
"""
import sys


def load(path):
    figures = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 6 or line.startswith("#"):
                continue
            ident, metric, value, rss, runs, note = parts[:6]
            figures[ident] = {
                "metric": metric,
                "value": float(value),
                "rss_mib": None if rss == "-" else int(rss) / 1024.0,
                "runs": int(runs),
                "note": note,
            }
    return figures


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "MiB":
        return f"{v:,.0f} MiB" if v >= 100 else f"{v:.1f} MiB"
    if v >= 100:
        return f"{v:,.0f} {unit}"
    if v >= 10:
        return f"{v:.1f} {unit}"
    return f"{v:.2f} {unit}"


def fmt_ratio(r):
    # Two decimals hide the no-op ratios (0.003): below 0.1 show two significant digits.
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    hft, peers = load(sys.argv[1]), load(sys.argv[2])
    rows = []

    def ratio_row(label, h, p, unit, peer_name, target, good, key="value"):
        """A row comparing hft's figure with a peer's; `good(ratio)` says whether the target
        is met (None: no target on this row)."""
        if h is None or p is None:
            return
        hv = h[key] if key == "value" else h["rss_mib"]
        pv = p[key] if key == "value" else p["rss_mib"]
        if hv is None or pv is None or pv == 0:
            return
        r = hv / pv
        met = "-" if good is None else ("yes" if good(r) else "**no**")
        rows.append((label, fmt(hv, unit), f"{fmt(pv, unit)} ({peer_name})", fmt_ratio(r), target, met))

    def absolute_row(label, h, unit, scale, peer, target, good):
        """A row whose target is an absolute figure (peer shown for context only)."""
        if h is None:
            return
        v = h["value"] * scale
        peer_cell, ratio = "-", "-"
        if peer is not None:
            pv = peer[1]["value"] * scale
            peer_cell = f"{fmt(pv, unit)} ({peer[0]})"
            ratio = fmt_ratio(h["value"] / peer[1]["value"])
        rows.append((label, fmt(v, unit), peer_cell, ratio, target, "yes" if good(v) else "**no**"))

    for name in ["lstm-ref", "transformer-ref", "lstm-tiny", "transformer-tiny"]:
        h, p = hft.get(name), peers.get(f"torch-{name}")
        ratio_row(f"{name}: samples/s after warm-up", h, p, "samples/s", "PyTorch",
                  "ratio >= 1", lambda r: r >= 1.0)
        ratio_row(f"{name}: peak RSS", h, p, "MiB", "PyTorch", "ratio <= 0.5",
                  lambda r: r <= 0.5, key="rss")

    h, p = hft.get("features"), peers.get("pandas-features")
    ratio_row("features, 2M rows, windows materialised: rows/s", h, p, "rows/s",
              "pandas", "ratio >= 5", lambda r: r >= 5.0)
    ratio_row("features: peak RSS", h, p, "MiB", "pandas", "ratio < 1", lambda r: r < 1.0,
              key="rss")

    dvc_noop = peers.get("dvc-repro-noop")
    for n, limit_ms in [(100, 20.0), (10000, 1000.0)]:
        h = hft.get(f"noop-build-{n}")
        peer = ("dvc repro, 100 stages", dvc_noop) if n == 100 and dvc_noop else None
        target = f"< {limit_ms:.0f} ms" if limit_ms < 1000 else "< 1 s"
        absolute_row(f"no-op build, {n} experiments ({6 * n} stages)", h, "ms", 1.0, peer,
                     target, lambda v, lim=limit_ms: v < lim)
    ratio_row("no-op status, 100 experiments", hft.get("status-100"), peers.get("dvc-status"),
              "ms", "dvc status, 100 stages", "-", None)
    ratio_row("re-run after a parameter change (hft: 1 experiment, 3 stages)",
              hft.get("rerun-one-100"), peers.get("dvc-repro-one-chain"), "ms",
              "dvc: 1 chain of 10 stages", "-", None)

    h = hft.get("hash-first")
    ratio_row("hash 1 GiB, first time (page cache warm)", h, peers.get("b3sum"), "ms",
              "b3sum, all threads", "ratio <= 1.2", lambda r: r <= 1.2)
    ratio_row("hash 1 GiB, first time (page cache warm)", h, peers.get("b3sum-1t"), "ms",
              "b3sum --num-threads 1", "-", None)
    ratio_row("hash 1 GiB, first time (page cache warm)", h, peers.get("md5sum"), "ms",
              "md5sum", "-", None)
    ratio_row("hash 1 GiB, first time (page cache warm)", h, peers.get("dvc-add-cold"), "ms",
              "dvc add, empty DVC cache", "-", None)
    ratio_row("hash 1 GiB, page cache dropped", hft.get("hash-cold-disk"), peers.get("b3sum-cold-disk"),
              "ms", "b3sum, page cache dropped", "-", None)
    h = hft.get("hash-unchanged")
    if h is not None:
        p = peers.get("dvc-add-unchanged")
        rows.append((
            "unchanged 1 GiB file re-checked (whole `hft status` process)",
            fmt(h["value"], "ms"),
            f"{fmt(p['value'], 'ms')} (dvc add, no change)" if p else "-",
            fmt_ratio(h["value"] / p["value"]) if p else "-",
            "re-check < 1 ms",
            "yes" if h["value"] < 1.0 else f"not shown: {h['value']:.1f} ms is the whole process, an upper bound",
        ))

    print("| workload | hft | peer | hft/peer | target | met |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    setup = hft.get("noop-setup-10000") or hft.get("noop-setup-100")
    if setup is not None:
        print()
        print(f"Setup build of the no-op workload ({setup['note']}): {setup['value']:.1f} s.")


if __name__ == "__main__":
    main()
