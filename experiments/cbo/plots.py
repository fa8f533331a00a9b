"""Figures in the style of the paper's Figs. 1-2: where each run's consensus point (or GD iterate)
sits over time on the landscape's contour plot, and the success rate over iterations."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate

from experiments.cbo.claims import method
from runner.arrays import array_keys, run_array
from runner.report.style import figure, save, suptitle

LABELS = {"cbo": "CBO", "consensus_hopping": "consensus hopping", "gd": "gradient descent",
          "langevin": "annealed Langevin"}
COLORS = {"cbo": "tab:green", "consensus_hopping": "tab:purple", "gd": "tab:red", "langevin": "tab:orange"}
ORDER = ["cbo", "consensus_hopping", "gd", "langevin"]


def _snapshots(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, x1, x2) of every logged run position (the array metric `positions`), one entry per
    (snapshot, run); empty when the run logged none (algorithm.snapshot_every=0)."""
    run_dir = df.attrs.get("run_dir")
    if run_dir is None or "positions" not in array_keys(run_dir):
        return np.zeros(0), np.zeros(0), np.zeros(0)
    steps, points = run_array(df, "positions")  # (snapshots, runs, 2)
    return np.repeat(steps, points.shape[1]), points[..., 0].ravel(), points[..., 1].ravel()


def _landscape(ax, cfg: dict, steps, x1, x2, title: str) -> None:
    problem = instantiate({k: v for k, v in cfg["problem"].items()})
    if problem.d == 2:
        g = np.linspace(-2.5, 8.5, 220)
        X, Y = np.meshgrid(g, g)
        ax.contour(X, Y, problem.f(np.stack([X, Y], -1)), levels=22, linewidths=0.5, cmap="Greys", alpha=0.6)
        ax.set(xlim=(g[0], g[-1]), ylim=(g[0], g[-1]))  # points that wander off stay out of the frame
    if len(steps):
        sc = ax.scatter(x1, x2, c=steps, s=7, cmap="viridis", alpha=0.6, lw=0)
        ax.figure.colorbar(sc, ax=ax, label="iteration")
    ax.plot(*problem.x_star[:2], marker="*", color="tab:red", ms=12, ls="", label="global minimizer x*")
    ax.plot(*problem.start[:2], marker="x", color="k", ms=8, ls="", label="start")
    ax.set(xlabel="$x_1$", ylabel="$x_2$", title=title, aspect="equal")
    ax.legend(loc="upper left", fontsize=7)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=2, width=5.0, height=4.2)
    name = LABELS.get(method(cfg), method(cfg))
    suptitle(fig, "cbo", cfg.get("scale"), f"{name}, seed {cfg.get('seed')}")
    _landscape(axes[0, 0], cfg, *_snapshots(df), "each run's point over time")
    ax = axes[0, 1]
    ax.plot(df.step, df.success_rate, color=COLORS.get(method(cfg)), label="runs within 0.5 of x* (%)")
    ax2 = ax.twinx()
    ax2.semilogy(df.step, df.dist_median, color="0.3", ls="--", lw=0.9, label="median distance to x*")
    ax.set(xlabel="iteration", ylabel="success (% of runs)", ylim=(-3, 103),
           title=f"{name}: {cfg['algorithm']['runs']} runs")
    ax2.set_ylabel("median distance to x*")
    ax.legend(loc="upper left", fontsize=7)
    ax2.legend(loc="upper right", fontsize=7)
    return save(fig, Path(out_dir) / "landscape.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.status.get("status") == "completed" and "success_rate" in r.metrics]
    methods = [m for m in ORDER if any(method(r.cfg) == m for r in done)]
    methods += sorted({method(r.cfg) for r in done} - set(methods))
    if not methods:
        return []
    fig, axes = figure(ncols=len(methods), nrows=2, width=4.3, height=4.0)
    for col, m in enumerate(methods):
        rs = sorted((r for r in done if method(r.cfg) == m), key=lambda r: r.cfg.get("seed", 0))
        first = rs[0]
        _landscape(axes[0, col], first.cfg, *_snapshots(first.metrics),
                   f"{LABELS.get(m, m)}\n(seed {first.cfg.get('seed')}, "
                   f"{first.cfg['algorithm']['runs']} runs)")
        ax = axes[1, col]
        curves = pd.concat([r.metrics.set_index("step").success_rate for r in rs], axis=1)
        mean, sd = curves.mean(axis=1), curves.std(axis=1).fillna(0.0)
        ax.plot(mean.index, mean, color=COLORS.get(m), label=f"mean ± SD over {len(rs)} seeds")
        ax.fill_between(mean.index, mean - sd, mean + sd, color=COLORS.get(m), alpha=0.2, lw=0)
        ax.set(xlabel="iteration (log)", xscale="log", ylabel="runs within 0.5 of x* (%)", ylim=(-3, 103),
               title=f"{LABELS.get(m, m)}: final {mean.iloc[-1]:.0f}%")
        ax.legend(loc="upper left", fontsize=7)
    suptitle(fig, "cbo", done[0].cfg.get("scale"), "consensus point (CBO, CH) or iterate (GD, Langevin) of every run")
    return [save(fig, Path(out_dir) / "cbo.png")]
