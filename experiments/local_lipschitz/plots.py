"""Figures in the style of the paper's tables of bounds and times: every bound per box (log scale), and the
mean time per method."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.report.style import figure, save, suptitle

METHODS = [("lower", "sampling (lower bound)", "tab:gray"), ("exact", "exact (MILP)", "k"),
           ("ours_bab", "ours + BaB", "tab:purple"), ("ours", "ours (linear bound propagation)", "tab:blue"),
           ("interval", "interval (RecurJac-like)", "tab:orange"), ("naive", "naive (product of norms)", "tab:red")]


def _boxes(df: pd.DataFrame) -> pd.DataFrame:
    return df[df.ours.notna()] if "ours" in df else df.iloc[:0]


def _bounds(ax, df: pd.DataFrame, title: str) -> None:
    d = _boxes(df)
    for i, (col, label, color) in enumerate(METHODS):
        if col in d and d[col].notna().any():
            ax.plot(np.arange(1, len(d) + 1) + (i - 2.5) * 0.06, d[col], marker="o_sx^v"[i % 6], ls="",
                    color=color, label=label, ms=5)
    ax.set(yscale="log", xlabel="box", ylabel="local Lipschitz bound ($\\ell_\\infty$)", title=title)
    ax.legend(fontsize=7)


def _times(ax, runs: list) -> None:
    names, means = [], []
    for col, label, _ in METHODS:
        t = [_boxes(r.metrics)[f"t_{col}"].mean() for r in runs if f"t_{col}" in r.metrics
             and _boxes(r.metrics)[f"t_{col}"].notna().any()]
        if col == "ours_bab":
            t = [_boxes(r.metrics)["t_bab"].mean() for r in runs if "t_bab" in r.metrics
                 and _boxes(r.metrics)["t_bab"].notna().any()]
        if t:
            names.append(label.split(" (")[0])
            means.append(float(np.mean(t)))
    ax.bar(names, means, color="tab:blue")
    ax.set(yscale="log", ylabel="mean seconds per box", title="time per method")
    ax.tick_params(axis="x", rotation=30, labelsize=7)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=1, width=6.0, height=4.2)
    suptitle(fig, "local_lipschitz", cfg.get("scale"), f"seed {cfg.get('seed')}, eps {cfg['problem']['eps']}")
    _bounds(axes[0, 0], df, "bounds per box")
    return save(fig, Path(out_dir) / "bounds.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.status.get("status") == "completed" and "ours" in r.metrics]
    if not done:
        return []
    paths = []
    for study in sorted({r.study for r in done}, key=str):
        rs = sorted((r for r in done if r.study == study), key=lambda r: (r.arm != "bab", r.cfg.get("seed", 0)))
        first = rs[0]
        fig, axes = figure(ncols=2, width=6.0, height=4.2)
        _bounds(axes[0, 0], first.metrics, f"{study}: bounds per box ({first.arm}, seed {first.cfg.get('seed')})")
        _times(axes[0, 1], rs)
        suptitle(fig, "local_lipschitz", first.cfg.get("scale"), f"study {study}: {len(rs)} runs")
        paths.append(save(fig, Path(out_dir) / f"local_lipschitz_{study}.png"))
    return paths
