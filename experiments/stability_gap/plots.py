"""Figures in the style of the paper's Fig. 1/2: task-1 accuracy at every iteration."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.stability_gap.claims import col, min_acc_task_ends, task_ends
from runner.report.style import COLORS, figure, save


def _label(cfg: dict) -> str:
    return "Rotated-digits" if cfg["dataset"]["_target_"].endswith(".rotated") else "Split"


def _bench_name(cfg: dict) -> str:
    base = cfg["dataset"].get("base", {}).get("name", "data")
    kind = "rotated" if cfg["dataset"]["_target_"].endswith(".rotated") else "split"
    return f"{kind}-{base}"


def _boundaries(ax, ends: list[int]) -> None:
    for t in ends[:-1]:
        ax.axvline(t, color="0.4", ls="--", lw=0.8)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    """Every seen task's accuracy per iteration for one run, task 1 in bold, min-ACC dotted."""
    fig, axes = figure()
    ax = axes[0, 0]
    ends = task_ends(df)
    prefix = col("acc_task")
    tasks = sorted(int(c[len(prefix):]) for c in df.columns if c.startswith(prefix))
    for k in tasks:
        ax.plot(df.step, df[col(f"acc_task{k}")], lw=1.6 if k == 1 else 0.8, label=f"task {k}",
                alpha=1.0 if k == 1 else 0.75)
    ends_rows = df.set_index("step").loc[ends]
    ax.scatter(ends, ends_rows[col("acc_task1")], marker="D", s=28, color="k", zorder=5, label="task ends (task 1)")
    if df[col("min_acc")].notna().any():
        ax.axhline(df[col("min_acc")].dropna().iloc[-1], color="k", ls=":", lw=1, label="min-ACC (every iteration)")
    _boundaries(ax, ends)
    ax.set(xlabel="training iteration", ylabel="test accuracy (%)", ylim=(-2, 102),
           title=f"stability_gap ({cfg.get('scale')}) {_bench_name(cfg)}, {cfg['trainer']['method']}, "
                 f"seed {cfg.get('seed')}")
    ax.legend(loc="lower left", ncol=2)
    return save(fig, Path(out_dir) / "accuracy.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    """Task-1 accuracy, mean +- SD over seeds, per benchmark, methods overlaid (the paper's Fig. 2)."""
    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r.status.get("status") == "completed" and col("acc_task1") in r.metrics:
            groups[_bench_name(r.cfg)][r.cfg["trainer"]["method"]].append(r)
    if not groups:
        return []
    fig, axes = figure(ncols=len(groups), width=6.2, height=3.8)
    for ax, (bench, by_method) in zip(axes[0], sorted(groups.items(), reverse=True)):
        for method, rs in sorted(by_method.items()):
            curves = pd.concat([r.metrics.set_index("step")[col("acc_task1")] for r in rs], axis=1)
            mean, sd = curves.mean(axis=1), curves.std(axis=1).fillna(0.0)
            color = COLORS.get(method)
            ax.plot(mean.index, mean, color=color, lw=1.2, label=f"{method} (n={len(rs)})")
            ax.fill_between(mean.index, mean - sd, mean + sd, color=color, alpha=0.2, lw=0)
            ends = task_ends(rs[0].metrics)
            ax.scatter(ends, mean.loc[ends], marker="D", s=30, color=color, edgecolor="k", zorder=5)
            if method == "er":
                per_iter = np.mean([r.metrics[col("min_acc")].dropna().iloc[-1] for r in rs])
                at_ends = np.mean([min_acc_task_ends(r.metrics) for r in rs])
                ax.axhline(per_iter, color=color, ls=":", lw=1, label=f"ER min-ACC, every iteration ({per_iter:.1f})")
                ax.axhline(at_ends, color=color, ls="-.", lw=0.8, alpha=0.7,
                           label=f"ER min-ACC, task ends only ({at_ends:.1f})")
        _boundaries(ax, ends)
        scale = rs[0].cfg.get("scale")
        ax.set(xlabel="training iteration", ylabel="accuracy on task 1 (%)", ylim=(-2, 102),
               title=f"stability_gap ({scale}): {bench}, task-1 accuracy per iteration")
        ax.legend(loc="lower left", fontsize=7)
    return [save(fig, Path(out_dir) / "stability_gap.png")]
