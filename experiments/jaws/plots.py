"""Figures in the style of the paper's rollout analysis: relative L2 error against rollout step per arm (log y,
test and ood), a space-time plot of a true and a predicted test trajectory, energy spectra at step 100, and
the JAWS sigma map against the local steepness |D u| (arrays of runner.hooks.rollout_eval and the trainer)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.arrays import run_array
from runner.errors import OptrunError
from runner.report.style import figure, save

ARMS = ("mse", "uniform", "jaws", "unroll_h8", "jaws_h2")
LABELS = {"mse": "MSE", "uniform": "uniform Jacobian", "jaws": "JAWS", "unroll_h8": "MSE unroll H=8",
          "jaws_h2": "JAWS + H=2"}
P = "rollout_eval/"


def _array(df: pd.DataFrame, key: str):
    """The last logged value of an array metric, or None."""
    try:
        return run_array(df, key)[1][-1]
    except OptrunError:
        return None


def _error_panel(ax, groups: dict, which: str) -> None:
    for i, (arm, dfs) in enumerate(groups.items()):
        curves = [c for c in (_array(df, f"{P}{which}_rel_l2") for df in dfs) if c is not None]
        if not curves:
            continue
        arr = np.stack(curves)
        x = np.arange(arr.shape[1])
        ax.plot(x, arr.mean(0), color=f"C{i}", lw=1.4, label=f"{LABELS.get(arm, arm)} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(x, arr.min(0), arr.max(0), color=f"C{i}", alpha=0.12)
    ax.set_yscale("log")
    ax.set(xlabel="rollout step", ylabel="relative L2 error", title=f"{which} set: error vs rollout step")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _spacetime(axes, df: pd.DataFrame, label: str) -> None:
    true, pred = _array(df, f"{P}test_true"), _array(df, f"{P}test_pred")
    if true is None or pred is None:
        return
    lim = float(np.abs(true[0, :, 0]).max())
    for ax, u, name in ((axes[0], true[0, :, 0], "truth"), (axes[1], pred[0, :, 0], label)):
        ax.imshow(np.clip(u, -lim, lim), aspect="auto", origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim,
                  extent=(0, 1, 0, u.shape[0] - 1))
        ax.set(xlabel="x", ylabel="rollout step", title=f"test trajectory 0: {name}")


def _spectrum_panel(ax, groups: dict) -> None:
    drawn = False
    for i, (arm, dfs) in enumerate(groups.items()):
        spec = [s for s in (_array(df, f"{P}test_spectrum_pred") for df in dfs) if s is not None]
        if spec:
            ax.loglog(np.arange(1, len(spec[0])), np.mean(spec, 0)[1:], color=f"C{i}", lw=1.2,
                      label=LABELS.get(arm, arm))
        if not drawn:
            true = _array(dfs[0], f"{P}test_spectrum_true")
            if true is not None:
                ax.loglog(np.arange(1, len(true)), true[1:], color="k", lw=1.6, ls="--", label="truth")
                drawn = True
    ax.set(xlabel="wavenumber m", ylabel="energy |u_hat(m)|^2", title="test spectra at rollout step 100")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _sigma_panel(ax, df: pd.DataFrame) -> None:
    m = _array(df, "sigma_map")
    if m is None:
        ax.set_axis_off()
        return
    x = np.arange(m.shape[-1]) / m.shape[-1]
    ax.plot(x, m[1] / m[1].max(), color="C2", lw=1.4, label="sigma(x) (scaled)")
    ax.plot(x, m[2] / m[2].max(), color="k", lw=1.0, ls="--", label="|D u| (scaled)")
    ax.plot(x, m[0] / np.abs(m[0]).max(), color="0.6", lw=0.8, label="u (scaled)")
    ax.set(xlabel="x", title="JAWS: sigma vs |D u| (test, step 100)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    arm = cfg.get("arm") or "run"
    fig, axes = figure(ncols=2, nrows=2, width=4.6, height=3.4)
    _error_panel(axes[0][0], {arm: [df]}, "test")
    _spacetime((axes[1][0], axes[1][1]), df, LABELS.get(arm, arm))
    _sigma_panel(axes[0][1], df)
    return save(fig, Path(out_dir) / "jaws.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.completed and len(r.metrics)]
    if not done:
        return []
    groups = {a: [r.metrics for r in sorted(done, key=lambda r: str(r.seed)) if r.arm == a] for a in ARMS}
    groups = {a: v for a, v in groups.items() if v}
    fig, axes = figure(ncols=2, nrows=3, width=4.8, height=3.4)
    _error_panel(axes[0][0], groups, "test")
    _error_panel(axes[0][1], groups, "ood")
    _spectrum_panel(axes[1][0], groups)
    if "jaws" in groups:
        _sigma_panel(axes[1][1], groups["jaws"][0])
        _spacetime((axes[2][0], axes[2][1]), groups["jaws"][0], "JAWS")
    return [save(fig, Path(out_dir) / "jaws.png")]
