"""Figures in the paper's style: test accuracy against forward passes per method (mean ± SD over
seeds, on a shared grid of forward passes; the paper compares methods at equal forward passes), chance
marked; and PolyStep's own statistics per step: min and mean of the cost matrix C and the entropy of
the softmax weights W (log(2d) is uniform weights, the linear regime of the softmax)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from experiments.polystep.claims import DIGITS, MNIST, SPSA_STUDY, STARTER
from runner.report.style import figure, save, suptitle

STYLE = {"polystep": dict(color="tab:red", label="PolyStep"), "openai_es": dict(color="tab:blue", label="OpenAI-ES"),
         "spsa": dict(color="tab:green", label="SPSA"), "backprop": dict(color="0.4", label="backprop (zero grad)")}
ACC, X = "test_eval/test_acc", "forward_passes"


def _curve(run):
    df = run.metrics[[X, ACC]].copy()
    df[X] = df[X].fillna(0.0)  # the evaluation before the first step
    df = df.dropna(subset=[ACC])
    return df[X].to_numpy(float), df[ACC].to_numpy(float)


def _mean_sd(ax, runs: list, style: dict) -> None:
    curves = [_curve(r) for r in runs]
    curves = [c for c in curves if len(c[0])]
    if not curves:
        return
    end = min(c[0].max() for c in curves)
    grid = np.linspace(0, end, 40) if end > 0 else np.array([0.0])
    ys = np.stack([np.interp(grid, x, y) for x, y in curves])
    mean, sd = ys.mean(0), ys.std(0)
    ax.plot(grid, mean, color=style["color"], lw=1.4, label=f"{style['label']} (n={len(curves)})")
    ax.fill_between(grid, mean - sd, mean + sd, color=style["color"], alpha=0.2, lw=0)


def _accuracy_panel(ax, runs: list, studies: tuple, chance: float, title: str) -> None:
    for arm, style in STYLE.items():
        _mean_sd(ax, [r for r in runs if any(r.is_in(s, arm) for s in studies) and ACC in r.metrics], style)
    ax.axhline(chance, color="0.5", ls=":", lw=0.8, label=f"chance {chance:g} %")
    ax.axhline(70, color="tab:red", ls="--", lw=0.6)
    ax.set_xlabel("forward passes")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=7)


def _stats_panel(axes, runs: list) -> None:
    for r in runs:
        df = r.metrics.dropna(subset=["estimator/cost_min"])
        axes[0].plot(df.step, df["estimator/cost_min"], color="tab:red", lw=0.8, alpha=0.8)
        axes[0].plot(df.step, df["estimator/cost_mean"], color="tab:red", lw=0.8, ls="--", alpha=0.8)
        axes[1].plot(df.step, df["estimator/w_entropy"], color="tab:purple", lw=0.8, alpha=0.8)
    axes[0].set_ylabel("C: min (—), mean (--)")
    axes[1].set_ylabel("entropy of W rows (nats)")
    if runs:
        d = runs[0].cfg["trainer"]["estimator"]["particle_dim"]
        axes[1].axhline(math.log(2 * d), color="0.5", ls=":", lw=0.8, label=f"uniform, log {2 * d}")
        axes[1].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("PolyStep step")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    out = []
    smoke = [r for r in runs if r.is_in((DIGITS, SPSA_STUDY, STARTER))]
    if smoke:
        fig, axes = figure(ncols=2, width=4.4, height=3.4)
        _accuracy_panel(axes[0, 0], smoke, (DIGITS, SPSA_STUDY), 10, "digits SNN 64-32-10")
        _accuracy_panel(axes[0, 1], smoke, (STARTER,), 25, "SNN starter 16-24-4")
        suptitle(fig, "polystep", smoke[0].scale, "hard LIF, equal forward passes, mean ± SD over seeds")
        out.append(save(fig, Path(out_dir) / "accuracy_vs_forward_passes.png"))
    paper = [r for r in runs if r.is_in(MNIST)]
    if paper:
        fig, axes = figure(ncols=1, width=5.0, height=3.6)
        _accuracy_panel(axes[0, 0], paper, (MNIST,), 10, "MNIST SNN 784-128-10")
        suptitle(fig, "polystep", paper[0].scale, "hard LIF, equal forward passes")
        out.append(save(fig, Path(out_dir) / "mnist_accuracy_vs_forward_passes.png"))
    ps = [r for r in runs if r.cfg.get("arm") == "polystep" and "estimator/cost_min" in r.metrics]
    if ps:
        fig, axes = figure(ncols=2, width=4.0, height=3.2)
        _stats_panel(axes[0], ps)
        suptitle(fig, "polystep", ps[0].scale, "PolyStep's cost matrix and transport weights, every run")
        out.append(save(fig, Path(out_dir) / "polystep_cost_and_weights.png"))
    return out
