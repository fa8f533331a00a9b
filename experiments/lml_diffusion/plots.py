"""Figures in the style of the paper's NFE comparisons: final error against NFE per method (mean +- SD
over seeds, the exact-sample floor dashed), and scatter plots of the samples of each method."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.arrays import array_keys, run_array
from runner.report.style import figure, save, suptitle

LABELS = {"ddim": "DDIM", "langevin_pc": "DDIM + Langevin PC", "lml_pc": "DDIM + LML PC"}
COLORS = {"ddim": "tab:gray", "langevin_pc": "tab:blue", "lml_pc": "tab:red"}
ORDER = ["ddim", "langevin_pc", "lml_pc"]


def _samples(df: pd.DataFrame) -> np.ndarray | None:
    run_dir = df.attrs.get("run_dir")
    if run_dir is None or "samples" not in array_keys(run_dir):
        return None
    return run_array(df, "samples")[1][-1]


def _scatter(ax, pts: np.ndarray, title: str, color: str) -> None:
    if pts.ndim != 2 or pts.shape[1] != 2:  # images (paper scale): no scatter
        ax.set_axis_off()
        return
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4, lw=0, color=color)
    ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", title=title, xlabel="$x_1$", ylabel="$x_2$")


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    arm = cfg.get("arm") or cfg["algorithm"]["name"]
    fig, axes = figure(ncols=2, width=4.4, height=4.0)
    suptitle(fig, "lml_diffusion", cfg.get("scale"), f"{LABELS.get(arm, arm)}, NFE {cfg['algorithm']['nfe']}, "
             f"seed {cfg.get('seed')}")
    ax = axes[0, 0]
    ax.semilogy(df.nfe, df.loss, marker="o", color=COLORS.get(arm))
    ax.set(xlabel="NFE", ylabel="sliced-W2 to the exact marginal at the current level",
           title="error along the sampling path")
    pts = _samples(df)
    if pts is not None:
        _scatter(axes[0, 1], pts, "final samples (first 2000)", COLORS.get(arm, "k"))
    return save(fig, Path(out_dir) / "sampler.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.status.get("status") == "completed" and "swd" in r.metrics]
    if not done:
        return []
    arms = [a for a in ORDER if any(r.arm == a for r in done)]
    fig, axes = figure(ncols=2, width=5.0, height=4.0)
    suptitle(fig, "lml_diffusion", done[0].cfg.get("scale"), "final error vs NFE (mean ± SD over seeds)")
    for col, metric in enumerate(("swd", "mmd2")):
        ax = axes[0, col]
        for arm in arms:
            rows = [(r.cfg["algorithm"]["nfe"], float(r.metrics[metric].dropna().iloc[-1])) for r in done if r.arm == arm]
            table = pd.DataFrame(rows, columns=["nfe", "v"]).groupby("nfe").v
            mean, sd = table.mean(), table.std().fillna(0.0)
            ax.errorbar(mean.index, mean, yerr=sd, marker="o", capsize=3, color=COLORS[arm], label=LABELS[arm])
        floor = np.mean([float(r.metrics[f"{metric}_floor"].dropna().iloc[-1]) for r in done])
        ax.axhline(floor, ls="--", color="k", lw=0.8, label="two exact sample sets")
        ax.set(xlabel="NFE", ylabel="sliced-W2" if metric == "swd" else "MMD$^2$ (RBF, h = 0.2)",
               xticks=sorted({r.cfg["algorithm"]["nfe"] for r in done}))
        ax.legend(fontsize=7)
    paths = [save(fig, Path(out_dir) / "error_vs_nfe.png")]
    nfes = sorted({r.cfg["algorithm"]["nfe"] for r in done})
    fig, axes = figure(ncols=len(arms), nrows=len(nfes), width=3.2, height=3.2)
    for i, nfe in enumerate(nfes):
        for j, arm in enumerate(arms):
            rs = sorted((r for r in done if r.arm == arm and r.cfg["algorithm"]["nfe"] == nfe),
                        key=lambda r: r.cfg.get("seed", 0))
            pts = _samples(rs[0].metrics) if rs else None
            if pts is not None:
                _scatter(axes[i, j], pts, f"{LABELS[arm]}, NFE {nfe}", COLORS[arm])
    suptitle(fig, "lml_diffusion", done[0].cfg.get("scale"), "samples (first seed, 2000 points)")
    paths.append(save(fig, Path(out_dir) / "samples.png"))
    return paths
