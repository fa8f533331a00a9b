"""The run directory: `config.yaml`, `metrics.csv`, `status.json`, `summary.json`, figures.

Writes of JSON/YAML files are atomic (temp file, fsync, rename) so a killed run never leaves half
a file; `metrics.csv` is appended in buffered chunks with a fixed header (never rewritten).
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from runner.errors import OptrunError, RunLocked
from runner.naming import MAX_NAME, run_name  # noqa: F401 -- re-exported


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonable(v):
    if isinstance(v, (torch.Tensor, np.generic)):
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

    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    lock_file = property(lambda self: self.path / "run.lock")
    LOCK_STALE_S = 300.0  # a lock from another host not refreshed for this long is abandoned

    def clear(self) -> None:
        """Remove the previous run's outputs and checkpoint (for `force=true` / `restart=true`)."""
        for f in (self.metrics, self.status_file, self.summary_file, self.checkpoint, *self.path.glob("*.png"),
                  *self.path.glob("events.out.tfevents.*"), self.path / "mlflow_run_id"):
            f.unlink(missing_ok=True)
        for d in ("arrays", "hparams"):  # array metrics; TensorBoard's hparams run (runner.loggers)
            shutil.rmtree(self.path / d, ignore_errors=True)

    # -- one live process per run directory -------------------------------------------------
    @staticmethod
    def _me() -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": os.environ.get("SLURM_JOB_ID")}

    def _owner_alive(self, owner: dict) -> bool:
        me = self._me()
        if owner.get("slurm_job") and owner.get("slurm_job") == me["slurm_job"]:
            return False  # our own job, requeued: the previous incarnation is gone
        if owner.get("host") == me["host"]:
            try:
                os.kill(int(owner["pid"]), 0)
                return True
            except (ProcessLookupError, ValueError, TypeError, KeyError):
                return False
            except PermissionError:
                return True
        try:
            return time.time() - self.lock_file.stat().st_mtime < self.LOCK_STALE_S
        except OSError:
            return False

    def acquire_lock(self) -> None:
        """Exclusive-create `run.lock`; a lock held by a live process makes this run refuse to start."""
        for _ in range(3):
            try:
                fd = os.open(self.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = read_json(self.lock_file)
                if owner is None:  # being written right now, or garbage: look again shortly
                    time.sleep(0.2)
                    owner = read_json(self.lock_file) or {}
                if owner and self._owner_alive(owner):
                    raise RunLocked(f"{self.path} is already being run by pid {owner.get('pid')} on "
                                    f"{owner.get('host')}; not starting it twice") from None
                self.lock_file.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self._me(), f)
            return
        raise RunLocked(f"{self.path}: could not take run.lock (another process keeps taking it)")

    def refresh_lock(self) -> None:
        try:
            os.utime(self.lock_file)
        except OSError:
            pass

    def release_lock(self) -> None:
        owner = read_json(self.lock_file)
        if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            self.lock_file.unlink(missing_ok=True)


def _fmt(v) -> str:
    t = type(v)  # exact types first: after a flush resolves them, nearly every value is a float
    if t is float:
        return repr(v)
    if v is None:
        return ""
    if isinstance(v, (torch.Tensor, np.generic)):  # numpy scalars too: repr(np.float64(1.0)) is not a number
        v = v.item()
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _parse(text: str):
    """Inverse of `_fmt` for numbers read back from metrics.csv."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


class Deferred:
    """A logged value computed when the writer flushes, batched over every pending row: the hot path
    keeps its inputs (tensors, no host sync, no extra small ops) and `resolve_all` turns many of
    them into floats at once."""

    @classmethod
    def resolve_all(cls, items: list) -> list[float]:
        raise NotImplementedError


class PercentEqual(Deferred):
    """Percent of entries where `pred == target` (classification accuracy). With `from_logits`, `pred`
    holds logits and the argmax over the last dimension is also taken at the flush, one op for all
    pending rows instead of one per step."""

    __slots__ = ("pred", "target", "from_logits")

    def __init__(self, pred: torch.Tensor, target: torch.Tensor, from_logits: bool = False):
        self.pred, self.target, self.from_logits = pred, target, from_logits

    @classmethod
    def resolve_all(cls, items: list["PercentEqual"]) -> list[float]:
        out: list[float] = [math.nan] * len(items)
        groups: dict[tuple, list[int]] = {}
        for i, it in enumerate(items):  # equal shapes stack (an epoch's last batch may be smaller)
            key = (tuple(it.pred.shape), it.pred.device, it.pred.dtype, it.from_logits)
            groups.setdefault(key, []).append(i)
        for (_, _, _, from_logits), idx in groups.items():
            pred = torch.stack([items[i].pred for i in idx])
            if from_logits:
                pred = pred.argmax(dim=-1)
            target = torch.stack([items[i].target for i in idx])
            pred, target = pred.flatten(1), target.flatten(1)
            for i, v in zip(idx, ((pred == target).float().mean(1) * 100.0).tolist()):
                out[i] = v
        return out


class MetricsWriter:
    """`metrics.csv`, append-only: columns `step, task, time_s`, then the columns the trainer and hooks
    declare at setup (`declare`), then any others seen before the first flush. A column that first
    appears after the header is written is an error naming it (declare it in `columns(state)`): the
    file is never rewritten. Array values go to the `ArrayStore` under `arrays/`. Memory holds the
    pending rows and the last value per column, not the run."""

    LEAD = ("step", "task", "time_s")

    def __init__(self, path: Path):
        from runner.arrays import ArrayStore

        self.path = Path(path)
        self.columns: list[str] = list(self.LEAD)
        self.pending: list[dict] = []
        self._resolved = 0  # how many pending rows hold only Python values already
        self.header_written = False
        self.rows_written = 0
        self.last: dict = {}  # column -> last finite value written (summary.json's final metrics)
        self.arrays = ArrayStore(self.path.parent / "arrays")
        self.listeners: list = []  # fn(rows) called with every block of rows once it is in the file (trackers)

    def declare(self, columns) -> None:
        """Fix columns before the header is written (the trainer's and every hook's, at setup)."""
        known = set(self.columns)
        self.columns.extend(c for c in dict.fromkeys(columns) if c not in known)

    def add(self, row: dict) -> None:
        from runner.arrays import is_array

        arrays = [k for k, v in row.items() if is_array(v)]
        for k in arrays:
            self.arrays.add(k, row["step"], row.pop(k))
        self.pending.append(row)

    def resolve_pending(self) -> list[dict]:
        """Turn tensor and `Deferred` values of pending rows into Python numbers: one batched
        computation per kind and one host transfer per (device, dtype), not one per value."""
        deferred: dict[type, list] = {}
        scalars: dict[tuple, list] = {}
        for row in self.pending[self._resolved:]:
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
        self._resolved = len(self.pending)
        return self.pending

    def flush(self) -> None:
        rows = self.resolve_pending()
        self.arrays.flush()
        if not rows:
            return
        known = set(self.columns)
        new_cols = list(dict.fromkeys(k for r in rows for k in r if k not in known))
        if new_cols and self.header_written:
            first = next(r["step"] for r in rows if any(k in r for k in new_cols))
            raise OptrunError(f"{self.path}: metric '{new_cols[0]}' first appeared at step {first}, after the "
                              "header was written; the trainer or hook that logs it must declare it in columns(state)")
        self.columns.extend(new_cols)
        with open(self.path, "a" if self.header_written else "w", newline="") as f:
            w = csv.writer(f)
            if not self.header_written:
                w.writerow(self.columns)
            for r in rows:
                w.writerow([_fmt(r.get(c)) for c in self.columns])
        self.header_written = True
        self.rows_written += len(rows)
        for r in rows:
            self._remember(r)
        for listener in self.listeners:
            listener(rows)
        self.pending, self._resolved = [], 0

    def _remember(self, row: dict) -> None:
        for k, v in row.items():
            if k not in self.LEAD and v is not None and not (isinstance(v, float) and math.isnan(v)):
                self.last[k] = v

    def state(self) -> dict:
        """What a checkpoint records to resume this file (call right after a flush)."""
        return {"metrics_rows": self.rows_written, "columns": list(self.columns), "arrays": self.arrays.state()}

    def restore(self, sd: dict) -> None:
        """Resume: keep the header and the first `metrics_rows` rows of metrics.csv (those a checkpoint
        covers) and the array chunks it covers; drop whatever was logged after it."""
        n_rows, columns = sd["metrics_rows"], sd["columns"]
        try:
            with open(self.path, newline="") as f:
                reader = csv.reader(f)
                header = next(reader)
                rows = [r for _, r in zip(range(n_rows), reader)]
        except (OSError, StopIteration) as e:
            raise OptrunError(f"cannot resume: {self.path} is missing or empty ({type(e).__name__}); "
                              "rerun with restart=true to start from scratch") from None
        if header != list(columns) or len(rows) < n_rows:
            raise OptrunError(f"cannot resume: {self.path} does not match its checkpoint "
                              f"({len(rows)} of {n_rows} rows); rerun with restart=true to start from scratch")
        self.columns, self.header_written, self.rows_written = list(columns), True, n_rows
        self.pending, self._resolved, self.last = [], 0, {}
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with open(tmp, "w", newline="") as f:  # the covered rows only (resume is rare; the run never rewrites)
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows(rows)
        os.replace(tmp, self.path)
        for r in rows:
            self._remember({c: _parse(v) for c, v in zip(columns, r) if v != ""})
        self.arrays.restore(sd.get("arrays") or {})

    def last_values(self) -> dict:
        """The last logged value of every metric column (what summary.json reports as final)."""
        return dict(self.last)
