"""Read run directories back robustly: a bad file is reported with its path, never a crash."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from runner.results import read_json


@dataclass
class Run:
    path: Path
    cfg: dict
    status: dict
    summary: dict
    metrics: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    @property
    def experiment(self) -> str:
        return self.cfg.get("experiment_id", self.path.parent.name)


def find_run_dirs(root: Path) -> list[Path]:
    root = Path(root)
    return sorted({p.parent for p in root.rglob("status.json")} | {p.parent for p in root.rglob("config.yaml")
                                                                    if p.parent.name != ".hydra"})


def load_run(path: Path) -> tuple[Run | None, str | None]:
    """(run, None) for a finished run; (None, reason) when it must be left out."""
    status = read_json(path / "status.json")
    if status is None:
        return None, "no readable status.json"
    if status.get("status") not in ("completed", "diverged"):
        return None, f"status is {status.get('status')!r}" + (f": {status['error']}" if status.get("error") else "")
    try:
        cfg = yaml.safe_load((path / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        return None, f"unreadable config.yaml ({type(e).__name__})"
    summary = read_json(path / "summary.json") or {}
    try:
        metrics = pd.read_csv(path / "metrics.csv")
    except (OSError, ValueError, pd.errors.ParserError) as e:
        return None, f"unreadable metrics.csv ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    if "step" not in metrics.columns:
        return None, "metrics.csv has no 'step' column"
    return Run(path, cfg, status, summary, metrics), None


def load_runs(root: Path) -> tuple[list[Run], list[tuple[Path, str]]]:
    runs, skipped = [], []
    for p in find_run_dirs(root):
        run, why = load_run(p)
        if run is None:
            skipped.append((p, why))
        else:
            runs.append(run)
    return runs, skipped
