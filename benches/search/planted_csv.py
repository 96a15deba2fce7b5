#!/usr/bin/env python3
"""The planted AR(1) series of templates/planted_ar1.yaml as a daily CSV, for the Python
peers that read files (benches/search, scripts/search_bench.sh).

Log returns r_t = 0.3 r_{t-1} + 0.01 e_t; open, high, low and volume derived the way
hft's `generate_planted` derives them (src/data/synthetic.rs). It is the same process, not
the same draw: hft seeds ChaCha8, this numpy's PCG64.

  python3 benches/search/planted_csv.py OUT.csv [--bars 5000] [--seed 7]
"""
import argparse
import datetime

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--bars", type=int, default=5000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--ar", type=float, default=0.3)
    p.add_argument("--noise", type=float, default=0.01)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    day = datetime.date(2000, 1, 3)
    x, prev_close, log_price = 0.0, 100.0, np.log(100.0)
    with open(a.out, "w") as f:
        f.write("Date,Open,High,Low,Close,Volume\n")
        for _ in range(a.bars):
            while day.weekday() >= 5:
                day += datetime.timedelta(days=1)
            x = a.ar * x + a.noise * rng.normal()
            open_ = prev_close * np.exp(0.2 * a.noise * rng.normal())
            log_price += x
            close = np.exp(log_price)
            high = max(open_, close) * np.exp(0.5 * a.noise * abs(rng.normal()))
            low = min(open_, close) * np.exp(-0.5 * a.noise * abs(rng.normal()))
            volume = round(1e6 * (1.0 + 2.0 * abs(x) / a.noise) * np.exp(0.25 * rng.normal()))
            f.write(f"{day.isoformat()},{float(open_)!r},{float(high)!r},{float(low)!r},"
                    f"{float(close)!r},{volume}\n")
            prev_close = close
            day += datetime.timedelta(days=1)


if __name__ == "__main__":
    main()
