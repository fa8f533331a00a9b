"""Figures: measured mean cosine against √(2/(π·dim)) per estimator and size (log-log, the ±30 % band
of the headline), and test accuracy against forward passes with the gap to backprop at equal
forward passes (the review's 'less sample efficient', here as a curve)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.zo_review.claims import BAND, COS, SMALL, TEST_ACC, TRAIN, at_start
from runner.report.style import figure, save

COLOR = {"spsa": "tab:blue", "forward_gradient": "tab:cyan", "antithetic_es": "tab:orange",
         "node_perturbation": "tab:green", "node_perturbation_batch": "tab:olive", "backprop": "k"}


def _curve(df: pd.DataFrame) -> pd.Series:
    d = df.dropna(subset=[TEST_ACC])
    fp = d["forward_passes"].ffill().fillna(0) if "forward_passes" in d else d.step
    return pd.Series(d[TEST_ACC].to_numpy(), index=fp.to_numpy())


def _cos_panel(ax, runs: list) -> None:
    for r in runs:
        th, cos = at_start(r.metrics, "zo_alignment/cos_theory"), at_start(r.metrics, "zo_alignment/cos")
        marker = "s" if r.cfg.get("study") == SMALL else "o"
        ax.scatter(th, cos, color=COLOR.get(r.cfg.get("arm"), "gray"), marker=marker, s=22)
    lo, hi = 0.005, 0.5
    xs = np.array([lo, hi])
    ax.plot(xs, xs, "k:", lw=1, label="measured = √(2/(π·dim))")
    ax.fill_between(xs, xs * (1 - BAND), xs * (1 + BAND), color="gray", alpha=0.15, lw=0, label=f"±{BAND:.0%}")
    for arm, c in COLOR.items():
        if arm != "backprop" and any(r.cfg.get("arm") == arm for r in runs):
            ax.scatter([], [], color=c, label=arm)
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo / 3, hi), xlabel="theory √(2/(π·dim))",
           ylabel="mean cos(ĝ, ∇L) over the draws", title="cosine at init (o: main size, s: second size)")
    ax.legend(fontsize=7, loc="upper left")


def _training_panels(ax, ax_gap, runs: list) -> None:
    arms: dict[str, list[pd.Series]] = {}
    for r in runs:
        if TEST_ACC in r.metrics:
            arms.setdefault(r.cfg.get("arm"), []).append(_curve(r.metrics))
    bp = None
    for arm, curves in sorted(arms.items()):
        mean = pd.concat(curves, axis=1).mean(axis=1).sort_index()
        ax.plot(mean.index, mean, color=COLOR.get(arm, "gray"), label=f"{arm} ({mean.iloc[-1]:.1f} %)")
        if arm == "backprop":
            bp = mean
    for arm, curves in sorted(arms.items()):
        if bp is None or arm == "backprop":
            continue
        mean = pd.concat(curves, axis=1).mean(axis=1).sort_index()
        ref = np.interp(mean.index, bp.index, bp.to_numpy())  # backprop's accuracy at the same forward passes
        ax_gap.plot(mean.index, ref - mean.to_numpy(), color=COLOR.get(arm, "gray"), label=arm)
    ax.set_xscale("symlog", linthresh=100)
    ax.set(xlim=(0, None), xlabel="forward passes", ylabel="test accuracy (%)", title="training at equal forward passes")
    ax.legend(fontsize=7, loc="lower right")
    ax_gap.axhline(0, color="k", lw=0.8)
    ax_gap.set_xscale("symlog", linthresh=100)
    ax_gap.set(xlim=(0, None), xlabel="forward passes", ylabel="backprop − estimator (pp)",
               title="gap to backprop at equal forward passes")
    ax_gap.legend(fontsize=7)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure()
    ax = axes[0, 0]
    if TEST_ACC in df:
        c = _curve(df)
        ax.plot(c.index, c.to_numpy(), color=COLOR.get(cfg.get("arm"), "k"))
        ax.set(xlabel="forward passes", ylabel="test accuracy (%)")
    ax.set_title(f"zo_review ({cfg.get('scale')}): {cfg.get('study')}.{cfg.get('arm')}, seed {cfg.get('seed')}")
    return save(fig, Path(out_dir) / "zo_review.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.status.get("status") == "completed"]
    cos = [r for r in done if r.cfg.get("study") in (COS, SMALL) and "zo_alignment/cos" in r.metrics]
    train = [r for r in done if r.cfg.get("study") == TRAIN]
    if not cos and not train:
        return []
    fig, axes = figure(ncols=3, width=4.8, height=3.8)
    if cos:
        _cos_panel(axes[0, 0], cos)
    if train:
        _training_panels(axes[0, 1], axes[0, 2], train)
    fig.suptitle(f"zo_review ({done[0].cfg.get('scale')}): zeroth-order estimators vs backprop")
    return [save(fig, Path(out_dir) / "zo_review.png")]
