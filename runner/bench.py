"""Benchmark rows and side-by-side timing. Speed is measured here, never asserted in tests.

Every comparison appends one row `name, ours, reference, unit, ratio, target, met` to
`results/bench/summary.csv`, where ratio = ours / reference (for timings run side by side, the
median of the per-round ratios, `paired_ratio`) and target is a condition on the ratio
such as "<=0.5" or ">=0.9". `interleaved` times two callables A B A B ... after a warm-up and
returns the medians, so both sides see the same machine state; `round_robin` does the same for any
number of sides and leaves each side's setup out of its time. Raw timings go to `raw/<name>.json`
and remarks (a skipped section, a missing optional package) to `notes.jsonl`, both beside the
summary; `make bench` (`python -m bench`) renders all of it into `BENCH.md`. The directory is
`$OPTRUN_BENCH_DIR` (default `results/bench`).
"""
from __future__ import annotations

import csv
import json
import operator
import os
import re
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


def bench_dir() -> Path:
    return Path(os.environ.get("OPTRUN_BENCH_DIR", "results/bench"))


def paired_ratio(ours: list[float], reference: list[float]) -> float:
    """Median over rounds of ours[i] / reference[i]: the two sides of round i ran back to back, so a
    machine that drifts during the benchmark (other load, clock changes) cancels out of each ratio."""
    if len(ours) != len(reference) or not ours:
        raise ValueError(f"paired_ratio: expected two equally long, non-empty series, got {len(ours)} and "
                         f"{len(reference)}")
    return statistics.median(a / b for a, b in zip(ours, reference))


def record(name: str, ours: float, reference: float, unit: str, target: str = "",
           path: str | Path | None = None, raw: dict | None = None, ratio: float | None = None) -> dict:
    """Append (or replace, by name) one comparison row and return it; `raw` (e.g. every repeat's
    time of both sides) is saved to `raw/<name>.json` beside the summary. `ratio` defaults to
    ours / reference; side-by-side timings pass their `paired_ratio` instead."""
    path = Path(path) if path is not None else bench_dir() / "summary.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    if ratio is None:
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
    if raw is not None:
        save_raw(name, {**row, **raw}, path.parent)
    return row


def read_rows(path: str | Path | None = None) -> list[dict]:
    path = Path(path) if path is not None else bench_dir() / "summary.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def raw_path(name: str, directory: str | Path | None = None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_") or "bench"
    return Path(directory if directory is not None else bench_dir()) / "raw" / f"{safe}.json"


def save_raw(name: str, data: dict, directory: str | Path | None = None) -> Path:
    """Write one comparison's raw measurements (JSON) to `raw/<name>.json`."""
    path = raw_path(name, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")
    return path


def note(text: str, directory: str | Path | None = None) -> None:
    """A remark for BENCH.md (a section skipped and why), tagged with the benchmark that made it."""
    directory = Path(directory if directory is not None else bench_dir())
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "notes.jsonl", "a") as f:
        f.write(json.dumps({"bench": os.environ.get("OPTRUN_BENCH_NAME", ""), "note": text}) + "\n")


def read_notes(directory: str | Path | None = None) -> list[dict]:
    path = Path(directory if directory is not None else bench_dir()) / "notes.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def default_threads() -> int:
    """$OPTRUN_BENCH_THREADS, else min(2, cores): the CPU threads every benchmark uses."""
    return int(os.environ.get("OPTRUN_BENCH_THREADS") or 0) or min(2, os.cpu_count() or 1)


def set_threads(n: int | None = None) -> int:
    """Fix torch's CPU threads for a benchmark (`n`, else `default_threads()`), the same for both sides."""
    n = n or default_threads()
    torch.set_num_threads(n)
    return n


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


def round_robin(factories: dict[str, Callable[[], Callable[[], object]]], repeats: int = 5, warmup: int = 1
                ) -> dict[str, list[float]]:
    """Wall seconds of each side, run in turn (A B C A B C ...) after `warmup` rounds.

    A factory does a side's setup (build the model, the loader) untimed and returns the callable
    that is timed, so every repeat starts from the same fresh state."""
    times: dict[str, list[float]] = {k: [] for k in factories}
    for r in range(warmup + repeats):
        for name, factory in factories.items():
            fn = factory()
            _sync()
            t = time.perf_counter()
            fn()
            _sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - t)
    return times
