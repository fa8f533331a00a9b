"""Figures in the style of the paper's: error maps on the masked domain (prediction, reference, error),
held-out relative L2 against training step per arm (mean +- SD over seeds, log scale), and Jacobi-PCG
iterations to 1e-6 started from the prediction vs from zero."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.arrays import run_array
from runner.errors import OptrunError
from runner.report.style import figure, save

ARMS = ("supervised", "residual", "npsolver_k1", "npsolver_k5", "npsolver_k20", "no_stopgrad_k5")
LABELS = {"supervised": "supervised (labels)", "residual": "residual loss", "npsolver_k1": "NPSolver K=1",
          "npsolver_k5": "NPSolver K=5", "npsolver_k20": "NPSolver K=20", "no_stopgrad_k5": "K=5, no stop-grad"}


def _error_maps(axes, df: pd.DataFrame, label: str) -> bool:
    try:
        _, values = run_array(df, "example")
    except OptrunError:
        return False
    pred, ref, mask = np.asarray(values[-1])
    off = mask < 0.5
    show = [np.ma.masked_where(off, a) for a in (pred, ref, pred - ref)]
    lim = max(abs(ref).max(), 1e-12)
    titles = (f"{label}: prediction", "reference (direct solve)", "error")
    for ax, a, t, cmap in zip(axes, show, titles, ("viridis", "viridis", "RdBu_r")):
        kw = {"vmin": -lim, "vmax": lim} if cmap == "viridis" else {"vmin": -abs(a).max(), "vmax": abs(a).max()}
        im = ax.imshow(a, origin="lower", cmap=cmap, **kw)
        ax.set(title=t, xticks=[], yticks=[])
        ax.figure.colorbar(im, ax=ax, fraction=0.046)
    return True


def _curves(ax, groups: dict) -> None:
    for i, (arm, dfs) in enumerate(groups.items()):
        ds = [df.dropna(subset=["test_rel_l2"]) for df in dfs]
        n = min(map(len, ds))
        if n == 0:
            continue
        x = ds[0].step.to_numpy()[:n]
        arr = np.stack([d.test_rel_l2.to_numpy()[:n] for d in ds])
        m, s = arr.mean(0), arr.std(0)
        ax.plot(x, m, color=f"C{i}", marker="o", ms=3, label=f"{LABELS.get(arm, arm)} (n={len(ds)})")
        ax.fill_between(x, np.maximum(m - s, 1e-6), m + s, color=f"C{i}", alpha=0.15)
    ax.set(xlabel="Adam step", ylabel="held-out relative L2", yscale="log", title="relative L2 vs step")
    ax.legend(fontsize=7)


def _cg_bars(ax, groups: dict) -> None:
    names, pred, zero = [], [], []
    for arm, dfs in groups.items():
        d = [df.dropna(subset=["cg_iters_pred"]) for df in dfs]
        d = [x for x in d if len(x)]
        if not d:
            continue
        names.append(LABELS.get(arm, arm))
        pred.append(np.mean([x.cg_iters_pred.iloc[-1] for x in d]))
        zero.append(np.mean([x.cg_iters_zero.iloc[-1] for x in d]))
    x = np.arange(len(names))
    ax.bar(x - 0.2, zero, 0.4, label="from 0", color="0.6")
    ax.bar(x + 0.2, pred, 0.4, label="from the prediction", color="C0")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="Jacobi-PCG iterations to 1e-6", title="warm start from the network")
    ax.legend(fontsize=7)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=4, width=3.2, height=3.0)
    label = LABELS.get(cfg.get("arm"), cfg.get("arm") or "run")
    _curves(axes[0][0], {cfg.get("arm") or "run": [df]})
    _error_maps(axes[0][1:], df, label)
    return save(fig, Path(out_dir) / "npsolver.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.completed and len(r.metrics) and "test_rel_l2" in r.metrics]
    if not done:
        return []
    groups = {a: [r.metrics for r in sorted(done, key=lambda r: str(r.seed)) if r.arm == a] for a in ARMS}
    groups = {a: v for a, v in groups.items() if v}
    out = []
    fig, axes = figure(ncols=2, width=5.0, height=3.8)
    _curves(axes[0][0], groups)
    _cg_bars(axes[0][1], groups)
    out.append(save(fig, Path(out_dir) / "npsolver_curves.png"))
    maps = [(a, dfs[0]) for a, dfs in groups.items() if a in ("supervised", "residual", "npsolver_k5")]
    if maps:
        fig, axes = figure(ncols=3, nrows=len(maps), width=3.2, height=2.8)
        drawn = [_error_maps(axes[i], df, LABELS[a]) for i, (a, df) in enumerate(maps)]
        if any(drawn):
            out.append(save(fig, Path(out_dir) / "npsolver_error_maps.png"))
    return out
