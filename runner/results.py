"""The run directory: `config.yaml`, `metrics.csv`, `status.json`, `summary.json`, figures.

Writes of JSON/YAML files are atomic (temp file, fsync, rename) so a killed run never leaves half
a file; `metrics.csv` is appended in buffered chunks with a fixed header (a new column rewrites it).
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import subprocess
import time
from pathlib import Path

import torch

from runner.errors import OptrunError

MAX_NAME = 120


def run_name(override_dirname: str) -> str:
    """A file-system-safe, deterministic run name from Hydra's `override_dirname` ('a=1,b=2')."""
    name = re.sub(r"[^A-Za-z0-9=,._+-]", "_", override_dirname) or "default"
    if len(name) > MAX_NAME:
        name = name[: MAX_NAME - 9] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonable(v):
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class RunDir:
    FINISHED = ("completed", "diverged")

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as e:
            raise OptrunError(f"results_dir: cannot write to {self.path} ({e.strerror})") from e

    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.csv")
    status_file = property(lambda self: self.path / "status.json")
    summary_file = property(lambda self: self.path / "summary.json")

    def status(self) -> dict | None:
        return read_json(self.status_file)

    def finished(self) -> bool:
        s = self.status()
        return bool(s) and s.get("status") in self.FINISHED

    def write_status(self, status: str, **fields) -> None:
        old = self.status() or {}
        now = time.time()
        info = {**old, "status": status, **fields, "updated": now}
        info.setdefault("started", now)
        info.setdefault("versions", {"torch": torch.__version__, "python": ".".join(map(str, os.sys.version_info[:3]))})
        info.setdefault("git_commit", git_commit())
        write_json(self.status_file, info)

    def clear(self) -> None:
        """Remove the previous run's outputs (for `force=true`)."""
        for f in (self.metrics, self.status_file, self.summary_file, *self.path.glob("*.png")):
            f.unlink(missing_ok=True)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return repr(v)
    return str(v)


class Deferred:
    """A logged value computed when the writer flushes, batched over every pending row: the hot path
    keeps its inputs (tensors, no host sync, no extra small ops) and `resolve_all` turns many of
    them into floats at once."""

    @classmethod
    def resolve_all(cls, items: list) -> list[float]:
        raise NotImplementedError


class PercentEqual(Deferred):
    """Percent of entries where `pred == target` (classification accuracy from argmax predictions)."""

    __slots__ = ("pred", "target")

    def __init__(self, pred: torch.Tensor, target: torch.Tensor):
        self.pred, self.target = pred, target

    @classmethod
    def resolve_all(cls, items: list["PercentEqual"]) -> list[float]:
        out: list[float] = [math.nan] * len(items)
        groups: dict[tuple, list[int]] = {}
        for i, it in enumerate(items):  # equal shapes stack (an epoch's last batch may be smaller)
            groups.setdefault((tuple(it.pred.shape), it.pred.device), []).append(i)
        for idx in groups.values():
            pred = torch.stack([items[i].pred for i in idx]).flatten(1)
            target = torch.stack([items[i].target for i in idx]).flatten(1)
            for i, v in zip(idx, ((pred == target).float().mean(1) * 100.0).tolist()):
                out[i] = v
        return out


class MetricsWriter:
    """Buffered CSV rows with columns `step, task, time_s, <metrics...>` in first-seen order."""

    LEAD = ("step", "task", "time_s")

    def __init__(self, path: Path):
        self.path = Path(path)
        self.columns: list[str] = list(self.LEAD)
        self.pending: list[dict] = []
        self.written: list[dict] = []  # kept to rewrite the file if a new column appears
        self.header_written = False

    def add(self, row: dict) -> None:
        self.pending.append(row)

    def resolve_pending(self) -> list[dict]:
        """Turn tensor and `Deferred` values of pending rows into Python numbers: one batched
        computation per kind and one host transfer per (device, dtype), not one per value."""
        deferred: dict[type, list] = {}
        scalars: dict[tuple, list] = {}
        for row in self.pending:
            for k, v in row.items():
                if isinstance(v, Deferred):
                    deferred.setdefault(type(v), []).append((row, k))
                elif isinstance(v, torch.Tensor):
                    if v.dim() == 0:
                        scalars.setdefault((v.device, v.dtype), []).append((row, k))
                    else:
                        row[k] = v.item()
        for kind, slots in deferred.items():
            for (row, k), value in zip(slots, kind.resolve_all([row[k] for row, k in slots])):
                row[k] = value
        for slots in scalars.values():
            for (row, k), value in zip(slots, torch.stack([row[k] for row, k in slots]).tolist()):
                row[k] = value
        return self.pending

    def flush(self) -> None:
        rows = self.resolve_pending()
        if not rows:
            return
        new_cols = [k for r in rows for k in r if k not in self.columns]
        for k in dict.fromkeys(new_cols):
            self.columns.append(k)
        if new_cols and self.header_written:
            self._rewrite(self.written + rows)
        else:
            with open(self.path, "a" if self.header_written else "w", newline="") as f:
                w = csv.writer(f)
                if not self.header_written:
                    w.writerow(self.columns)
                for r in rows:
                    w.writerow([_fmt(r.get(c)) for c in self.columns])
        self.header_written = True
        self.written.extend(rows)
        self.pending = []

    def _rewrite(self, rows: list[dict]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.columns)
            for r in rows:
                w.writerow([_fmt(r.get(c)) for c in self.columns])
        os.replace(tmp, self.path)

    def last_values(self) -> dict:
        """The last logged value of every metric column (what summary.json reports as final)."""
        out = {}
        for r in self.written:
            for k, v in r.items():
                if k not in self.LEAD and v is not None and not (isinstance(v, float) and math.isnan(v)):
                    out[k] = v
        return out
