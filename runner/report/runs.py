"""Read run directories back robustly: a bad file is reported with its path and why, never a crash.

A run is *read* when it finished (`completed` or `diverged`) and its config and metrics parse; it
may still carry `notes` (a missing summary.json, a dropped half-written last line, unparsable cells
set to NaN). Anything else is *left out* with one line saying why: still running, failed, a
truncated or unreadable metrics.csv, an unreadable config.yaml or status.json.
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import yaml

STALE_S = 3600  # a 'running' run not updated for this long was probably killed


@dataclass
class Run:
    path: Path
    cfg: dict
    status: dict
    summary: dict
    metrics: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)  # problems that did not stop the run from being read

    @property
    def experiment(self) -> str:
        return self.cfg.get("experiment_id", self.path.parent.name)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def scale(self) -> str:
        return str(self.cfg.get("scale", "smoke"))

    @property
    def study(self) -> str | None:
        """The study of `experiments/<id>/studies.yaml` this run belongs to (None: an ad hoc run)."""
        return self.cfg.get("study")

    @property
    def arm(self) -> str | None:
        return self.cfg.get("arm")

    def is_in(self, study=None, arms=None) -> bool:
        from runner.claims import in_study

        return in_study(self.cfg, study, arms)

    @property
    def seed(self):
        return self.cfg.get("seed")

    @property
    def completed(self) -> bool:
        return self.status.get("status") == "completed"

    @property
    def diverged(self) -> bool:
        return self.status.get("status") == "diverged"

    @property
    def diverged_at(self) -> int | None:
        """The step whose loss was non-finite (status.json, else summary.json, else the last step)."""
        if not self.diverged:
            return None
        for src in (self.status, self.summary):
            if src.get("diverged_at") is not None:
                return int(src["diverged_at"])
        return int(self.metrics["step"].max()) if len(self.metrics) else None


class Skipped(NamedTuple):
    path: Path
    reason: str
    experiment: str = ""


def find_run_dirs(root: Path) -> list[Path]:
    """Folders holding a status.json or config.yaml, ignoring hidden folders (Hydra's .hydra/)."""
    root = Path(root)
    found = set()
    for name in ("status.json", "config.yaml"):
        for p in root.rglob(name):
            if not any(part.startswith(".") for part in p.relative_to(root).parts[:-1]):
                found.add(p.parent)
    return sorted(found)


def error_line(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0]}" if msg else type(e).__name__


def read_status(path: Path) -> tuple[dict | None, str | None]:
    f = path / "status.json"
    if not f.exists():
        return None, "no status.json (never started, or not an optrun run folder)"
    try:
        status = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        return None, f"status.json is unreadable ({error_line(e)})"
    if not isinstance(status, dict):
        return None, "status.json is not a JSON object"
    return status, None


def _last_activity(path: Path, status: dict) -> tuple[float, int | None]:
    """(seconds since the run last wrote anything, last logged step from metrics.csv's tail)."""
    times = [float(status.get("updated") or 0)]
    step = None
    for f in (path / "status.json", path / "metrics.csv"):
        try:
            times.append(f.stat().st_mtime)
        except OSError:
            pass
    try:
        with open(path / "metrics.csv", "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(fh.tell() - 4096, 0))
            lines = [ln for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
        step = int(float(lines[-1].split(",")[0])) if lines else None
    except (OSError, ValueError):
        pass
    return time.time() - max(times), step


def unfinished_reason(status: dict, path: Path | None = None) -> str | None:
    """Why a run with this status cannot be read (None when it finished)."""
    s, step = status.get("status"), status.get("step")
    if s in ("completed", "diverged"):
        return None
    if s == "running":
        age, logged = _last_activity(path, status) if path is not None else (0.0, None)
        step = logged if logged is not None else step
        if age > STALE_S:
            return f"status 'running' but nothing written for {age / 3600:.1f} h (last step {step}): probably killed"
        return f"still running (last logged step {step})"
    if s == "failed":
        return f"failed at step {step}: {status.get('error') or 'no error recorded'}"
    return f"unknown status {s!r}"


def read_config(path: Path) -> tuple[dict | None, str | None]:
    f = path / "config.yaml"
    try:
        cfg = yaml.safe_load(f.read_text())
    except FileNotFoundError:
        return None, "no config.yaml"
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        return None, f"config.yaml is unreadable ({error_line(e)})"
    if not isinstance(cfg, dict):
        return None, "config.yaml is not a mapping"
    return cfg, None


def read_metrics(path: Path, notes: list[str]) -> tuple[pd.DataFrame | None, str | None]:
    """metrics.csv as numbers; a half-written last line is dropped and bad cells become NaN (noted)."""
    f = path / "metrics.csv"
    try:
        text = f.read_text()
    except FileNotFoundError:
        return None, "no metrics.csv"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"metrics.csv is unreadable ({error_line(e)})"
    if not text.strip():
        return None, "metrics.csv is empty"
    if not text.endswith("\n") and "\n" in text:
        text = text[: text.rindex("\n") + 1]
        notes.append("metrics.csv: dropped a half-written last line")
    try:
        df = pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError):
        bad: list = []
        try:
            df = pd.read_csv(io.StringIO(text), on_bad_lines=lambda line: bad.append(line), engine="python")
        except (ValueError, pd.errors.ParserError) as e:
            return None, f"metrics.csv is unreadable ({error_line(e)})"
        notes.append(f"metrics.csv: skipped {len(bad)} malformed row(s)")
    if "step" not in df.columns:
        return None, "metrics.csv has no 'step' column"
    for c in [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]:
        num = pd.to_numeric(df[c], errors="coerce")
        n_bad = int((num.isna() & df[c].notna()).sum())
        if n_bad < df[c].notna().sum():  # mostly numbers: a corrupt cell, not a text column
            df[c] = num
            if n_bad:
                notes.append(f"metrics.csv: {n_bad} unparsable value(s) in '{c}' set to NaN")
    df = df[df["step"].notna()]
    if df.empty:
        return None, "metrics.csv has no rows"
    return df.reset_index(drop=True), None


def load_run(path: Path) -> tuple[Run | None, str | None]:
    """(run, None) for a finished, readable run; (None, reason) when it must be left out."""
    path = Path(path)
    status, why = read_status(path)
    if status is None:
        return None, why
    why = unfinished_reason(status, path)
    if why:
        return None, why
    cfg, why = read_config(path)
    if cfg is None:
        return None, why
    notes: list[str] = []
    metrics, why = read_metrics(path, notes)
    if metrics is None:
        return None, why
    metrics.attrs["run_dir"] = str(path)  # array metrics: runner.arrays.run_array(metrics, key)
    last, final = metrics["step"].max(), status.get("step")
    if status["status"] == "completed" and isinstance(final, (int, float)) and last < final:
        return None, f"metrics.csv ends at step {int(last)} but the run completed at step {int(final)} (truncated)"
    summary_file = path / "summary.json"
    try:
        summary = json.loads(summary_file.read_text())
        summary = summary if isinstance(summary, dict) else {}
    except FileNotFoundError:
        summary = {}
        notes.append("no summary.json (final metrics taken from metrics.csv)")
    except (OSError, ValueError) as e:
        summary = {}
        notes.append(f"summary.json is unreadable ({error_line(e)}); final metrics taken from metrics.csv")
    return Run(path, cfg, status, summary, metrics, notes), None


def final_metrics(run: Run) -> dict:
    """The last logged finite value of every metric (summary.json's, else recomputed from metrics.csv)."""
    got = run.summary.get("metrics")
    if isinstance(got, dict) and got:
        return got
    out = {}
    for c in run.metrics.columns:
        if c in ("step", "task", "time_s") or not pd.api.types.is_numeric_dtype(run.metrics[c]):
            continue
        vals = run.metrics[c]
        vals = vals[np.isfinite(vals)]
        if len(vals):
            out[c] = float(vals.iloc[-1])
    return out


def _experiment_of(path: Path) -> str:
    cfg, _ = read_config(path)
    return str(cfg.get("experiment_id")) if cfg and cfg.get("experiment_id") else path.parent.name


def load_runs(root: Path) -> tuple[list[Run], list[Skipped]]:
    runs, skipped = [], []
    for p in find_run_dirs(root):
        try:
            run, why = load_run(p)
        except Exception as e:  # noqa: BLE001 -- one bad folder must never stop the report
            run, why = None, f"could not be read ({error_line(e)})"
        if run is None:
            skipped.append(Skipped(p, why, _experiment_of(p)))
        else:
            runs.append(run)
    return runs, skipped
