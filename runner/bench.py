"""Benchmark rows and side-by-side timing. Speed is measured here, never asserted in tests.

Every comparison appends one row `name, ours, reference, unit, ratio, target, met` to
`results/bench/summary.csv`, where ratio = ours / reference and target is a condition on the ratio
such as "<=0.5" or ">=0.9". `interleaved` times two callables A B A B ... after a warm-up and
returns the medians, so both sides see the same machine state.
"""
from __future__ import annotations

import csv
import operator
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

COLUMNS = ["name", "ours", "reference", "unit", "ratio", "target", "met"]
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def target_met(ratio: float, target: str) -> bool | None:
    """Evaluate a target like '<=0.5' on a ratio; None when there is no target."""
    target = (target or "").strip()
    if not target:
        return None
    for sym in ("<=", ">=", "<", ">"):
        if target.startswith(sym):
            return bool(_OPS[sym](ratio, float(target[len(sym):])))
    raise ValueError(f"bench target {target!r}: expected '<=x', '>=x', '<x' or '>x'")


def record(name: str, ours: float, reference: float, unit: str, target: str = "",
           path: str | Path = "results/bench/summary.csv") -> dict:
    """Append (or replace, by name) one comparison row and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ratio = ours / reference if reference else float("nan")
    met = target_met(ratio, target)
    row = {"name": name, "ours": f"{ours:.6g}", "reference": f"{reference:.6g}", "unit": unit,
           "ratio": f"{ratio:.4g}", "target": target, "met": "" if met is None else str(met).lower()}
    rows = []
    if path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("name") != name]
    rows.append(row)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
    return row


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int = 5, warmup: int = 1
                ) -> tuple[float, float, list[float], list[float]]:
    """Median wall seconds of a() and b(), run A B A B ... after `warmup` rounds of each."""
    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            _sync()
            t = time.perf_counter()
            fn()
            _sync()
            out.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb), ta, tb
