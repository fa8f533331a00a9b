"""Figures in the paper's style: average return against trajectories consumed, mean +- SD over seeds,
one line per method (vanilla PG one per grid step size), divergent runs marked where they stopped; and
(N)-HARPG's Hessian-vector products beside the normalized methods' |d_t|."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.report.style import figure, save

WINDOW = (600, 750)


def _label(cfg: dict) -> str:
    t = cfg["trainer"]
    name = {"pg": "vanilla PG", "n_pg_igt": "N-PG-IGT", "harpg": "HARPG", "n_harpg": "N-HARPG"}[t["method"]]
    if t["method"] == "pg":
        return f"{name} lr {t['gamma0']:g}"
    sched = "decaying" if t["schedule"] == "decay" else "constant"
    return f"{name} ({sched}, gamma0 {t['gamma0']:g}" + (f", eta0 {t['eta0']:g})" if t["method"] != "pg" else ")")


def _groups(runs: list) -> dict:
    out: dict = {}
    for r in runs:
        out.setdefault((r.cfg.get("arm") or "", _label(r.cfg)), []).append(r)
    return out


def _curves(ax, runs: list, smooth: int = 5) -> None:
    for i, ((arm, label), rs) in enumerate(sorted(_groups(runs).items())):
        frames = [r.metrics.dropna(subset=["trajectories"]).set_index("trajectories")["return"] for r in rs]
        df = pd.concat(frames, axis=1).rolling(smooth, min_periods=1).mean()
        mean, sd = df.mean(axis=1), df.std(axis=1).fillna(0)
        ls = ":" if arm == "pg" else ("--" if "decay" in arm else "-")
        line = ax.plot(mean.index, mean, lw=1.0, ls=ls, color=f"C{i % 10}", label=f"{label} (n={len(rs)})")[0]
        ax.fill_between(mean.index, mean - sd, mean + sd, color=line.get_color(), alpha=0.12)
        for r in rs:
            if r.status.get("status") == "diverged" and len(r.metrics):
                last = r.metrics.dropna(subset=["trajectories"]).iloc[-1]
                ax.plot(last.trajectories, 0, "x", ms=8, mew=2, color=line.get_color())
    ax.axvspan(*WINDOW, color="0.9", zorder=0)
    ax.set(xlabel="trajectories", ylabel=f"average return ({smooth}-iteration moving mean)",
           title="return vs trajectories, mean +- SD over seeds\n(grey: the claims' window; x: a diverged run)")
    ax.legend(fontsize=6)


def _hvp(ax, runs: list) -> None:
    for i, ((arm, label), rs) in enumerate(sorted(_groups(runs).items())):
        if arm == "pg":
            continue
        d = np.mean([r.metrics.d_norm.to_numpy()[:125] for r in rs], axis=0)
        ax.semilogy(np.arange(1, len(d) + 1), d, lw=0.9, color=f"C{i % 10}", label=label)
    ax.set(xlabel="iteration (the first 125)", ylabel="|d_t| (seed mean)", title="the momentum estimators' norms")
    ax.legend(fontsize=6)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=1, width=6.0, height=3.8)
    run = type("R", (), {"cfg": cfg, "metrics": df, "status": {}})
    _curves(axes[0][0], [run], smooth=1)
    return save(fig, Path(out_dir) / "pg_fisher.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.status.get("status") in ("completed", "diverged") and len(r.metrics)
            and "return" in r.metrics]
    if not done:
        return []
    fig, axes = figure(ncols=2, width=6.5, height=4.2)
    _curves(axes[0][0], done)
    _hvp(axes[0][1], done)
    return [save(fig, Path(out_dir) / "pg_fisher.png")]
