"""Synthetic results trees for the reporter tests: run folders written by hand, no training."""
from __future__ import annotations

import importlib
import json
import math
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import experiments


def toy_metrics(lr: float, seed: int, steps: int = 40) -> pd.DataFrame:
    """loss = (1 + seed/10) exp(-lr t): known values, so aggregates can be checked by hand."""
    t = np.arange(steps + 1)
    loss = (1 + seed / 10) * np.exp(-lr * t)
    return pd.DataFrame({"step": t, "task": 1, "time_s": t * 0.01, "loss": loss, "acc": 100 * (1 - loss / 2)})


def write_run(root: Path, exp: str, name: str, cfg: dict, metrics: pd.DataFrame | None, status: str = "completed",
              diverged_at: int | None = None, summary: bool = True, **status_fields) -> Path:
    d = Path(root) / exp / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"experiment_id": exp, "seed": 0, "scale": "smoke", **cfg}))
    step = int(metrics.step.max()) if metrics is not None and len(metrics) else 0
    if metrics is not None:
        metrics.to_csv(d / "metrics.csv", index=False)
    st = {"status": status, "step": step, "diverged_at": diverged_at, "updated": time.time(), **status_fields}
    (d / "status.json").write_text(json.dumps(st))
    if summary and metrics is not None:
        final = {c: float(metrics[c].dropna().iloc[-1]) for c in metrics.columns
                 if c not in ("step", "task", "time_s") and metrics[c].notna().any()
                 and math.isfinite(metrics[c].dropna().iloc[-1])}
        (d / "summary.json").write_text(json.dumps({"status": status, "metrics": final, "claims": []}))
    return d


def toy_cfg(lr: float, method: str, seed: int, scale: str = "smoke") -> dict:
    return {"seed": seed, "scale": scale, "results_dir": "somewhere", "device": "cpu",
            "optimizer": {"_target_": "torch.optim.SGD", "lr": lr, "momentum": 0.9},
            "trainer": {"method": method, "hidden": [8, 8]}, "schedule": {}}


def toy_sweep(root: Path, exp: str, lrs=(0.05, 0.2), methods=("a", "b"), seeds=(0, 1, 2)) -> list[Path]:
    """lrs x methods x seeds completed runs of the toy experiment."""
    return [write_run(root, exp, f"lr={lr},method={m},seed={s}", toy_cfg(lr, m, s), toy_metrics(lr, s))
            for lr in lrs for m in methods for s in seeds]


def install_experiment(tmp_path: Path, monkeypatch, name: str, claims: str, plots: str | None = None) -> str:
    """Make `experiments.<name>` importable from tmp_path (claims.py, optional plots.py); returns name."""
    pkg = tmp_path / "fake_experiments" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "claims.py").write_text(textwrap.dedent(claims))
    if plots is not None:
        (pkg / "plots.py").write_text(textwrap.dedent(plots))
    monkeypatch.setattr(experiments, "__path__", [*experiments.__path__, str(pkg.parent)])
    for mod in [m for m in sys.modules if m.startswith(f"experiments.{name}")]:
        monkeypatch.delitem(sys.modules, mod)
    importlib.invalidate_caches()
    return name


TOY_CLAIMS = """
from runner.claims import Claim

CLAIMS = [
    Claim("loss falls", "the loss decreases (toy)", "final loss < 0.05",
          lambda df, c: df.loss.iloc[-1], lambda v: v < 0.05, lambda c: c["optimizer"]["lr"] >= 0.2),
    Claim("small lr converges", "a small step also converges (toy, fails)", "final loss < 0.05",
          lambda df, c: df.loss.iloc[-1], lambda v: v < 0.05, lambda c: c["optimizer"]["lr"] < 0.2, kind="headline"),
    Claim("needs a column", "a metric nobody logged", "gap > 0",
          lambda df, c: df["gap"].iloc[-1], lambda v: v > 0),
    Claim("paper only", "only checked at the paper's scale", "loss < 1",
          lambda df, c: df.loss.iloc[-1], lambda v: v < 1, scales=("paper",)),
]


def cross_run_claims(runs):
    fast = [r.metrics.loss.iloc[-1] for r in runs if r.cfg["optimizer"]["lr"] >= 0.2 and r.completed]
    slow = [r.metrics.loss.iloc[-1] for r in runs if r.cfg["optimizer"]["lr"] < 0.2 and r.completed]
    ratio = (sum(slow) / len(slow)) / (sum(fast) / len(fast))
    return [{"name": "large lr beats small lr", "paper": "toy", "criterion": "loss(small)/loss(large) > 10",
             "measured": ratio, "passed": ratio > 10, "n": len(fast) + len(slow), "n_passed": len(fast) + len(slow)},
            {"name": "impossible", "paper": "toy", "criterion": "ratio > 1e9", "measured": ratio,
             "passed": ratio > 1e9, "note": "deliberately failing"}]
"""
