"""M-FAC scaling: time of one inverse-Fisher-vector product (IHVP) against the dimension d and the
number of gradients m, for the static and the dynamic (sliding-window) algorithms, and against a
dense solve. The paper's costs: static O(d m^2) setup then O(d m) per IHVP; dynamic O(d m + m^2)
per IHVP. Rows go to results/bench/summary.csv (`ours` = fitted log-log exponent, reference = the
claimed one) and a table is printed.

    python -m bench.bench_mfac [--quick]
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

from runner.bench import record
from runner.optim.mfac import DynamicMFAC, StaticMFAC

DAMP = 1e-3


def _median_time(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _slope(xs, ts) -> float:
    return float(np.polyfit(np.log(xs), np.log(ts), 1)[0])


def _times(d: int, m: int, gen: torch.Generator) -> dict[str, float]:
    G = torch.randn(m, d, generator=gen)
    x = torch.randn(d, generator=gen)
    setup = _median_time(lambda: StaticMFAC(G, DAMP), repeats=3)
    static = StaticMFAC(G, DAMP)
    dyn = DynamicMFAC(m, d, DAMP)
    for g in G:
        dyn.insert(g)
    return {"setup": setup, "static": _median_time(lambda: static.ihvp(x)),
            "dynamic": _median_time(lambda: dyn.ihvp(x)), "insert": _median_time(lambda: dyn.insert(G[0]), repeats=3)}


def run(quick: bool = False) -> None:
    gen = torch.Generator().manual_seed(0)
    dims = [2**12, 2**14, 2**16] if quick else [2**12, 2**14, 2**16, 2**18, 2**20]
    ms = [16, 32, 64, 128] if quick else [16, 32, 64, 128, 256]  # up to 256 (was 512): make bench's 10 minutes
    print(f"{'d':>9} {'m':>5} {'setup s':>10} {'static ms':>10} {'dynamic ms':>11} {'insert ms':>10}")
    by_d = [(_d, _times(_d, 32, gen)) for _d in dims]
    d_m = 2**18  # every window size is out of cache here: one memory regime for the m sweep
    by_m = [(_m, _times(d_m, _m, gen)) for _m in ms]
    for tag, rows in (("d", by_d), ("m", by_m)):
        for v, t in rows:
            d, m = (v, 32) if tag == "d" else (d_m, v)
            print(f"{d:>9} {m:>5} {t['setup']:>10.4f} {1e3 * t['static']:>10.3f} {1e3 * t['dynamic']:>11.3f} "
                  f"{1e3 * t['insert']:>10.3f}")
    big = [(v, t) for v, t in by_d if v >= 2**14] or by_d
    for algo in ("static", "dynamic"):
        record(f"mfac_{algo}_ihvp_exponent_d", _slope([v for v, _ in big], [t[algo] for _, t in big]), 1.0,
               "log-log slope vs d (m=32)", "<=1.2")
        record(f"mfac_{algo}_ihvp_exponent_m", _slope([v for v, _ in by_m[1:]], [t[algo] for _, t in by_m[1:]]), 1.0,
               f"log-log slope vs m (d={d_m})", "<=1.3")
    record("mfac_static_setup_exponent_m", _slope([v for v, _ in by_m[1:]], [t["setup"] for _, t in by_m[1:]]), 2.0,
           f"log-log slope vs m (d={d_m})", "<=1.3")
    # against a dense (d x d) solve at a size where one fits in memory
    d = 2**12
    G = torch.randn(32, d, generator=gen, dtype=torch.float64)
    x = torch.randn(d, generator=gen, dtype=torch.float64)
    dense = DAMP * torch.eye(d, dtype=torch.float64) + G.T @ G / 32
    static = StaticMFAC(G, DAMP)
    t_mfac, t_dense = _median_time(lambda: static.ihvp(x)), _median_time(lambda: torch.linalg.solve(dense, x), 3)
    err = float((static.ihvp(x) - torch.linalg.solve(dense, x)).norm() / torch.linalg.solve(dense, x).norm())
    print(f"d={d}, m=32: static IHVP {1e3 * t_mfac:.3f} ms vs dense solve {1e3 * t_dense:.1f} ms, rel. err {err:.1e}")
    record("mfac_static_ihvp_vs_dense_solve_d4096", t_mfac, t_dense, "s", "<=0.05")


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
