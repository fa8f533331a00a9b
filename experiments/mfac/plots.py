"""Figures in the style of the M-FAC paper: accuracy after one-shot pruning against sparsity per
method, predicted vs actual loss increase, and test accuracy of the optimizers during training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.mfac.claims import (
    MFAC_ARM,
    PRUNE,
    REFERENCES,
    TEST_ACC,
    best_by_optimizer,
    final,
    optimizer_name,
    prunes,
)
from runner.report.style import figure, save

METHOD = {"magnitude": ("magnitude", "tab:gray"), "fisher": ("diagonal Fisher", "tab:orange"),
          "mfac": ("OBS with M-FAC", "tab:blue")}
OPT = {"mfac": "tab:blue", "adam": "tab:red", "sgd": "tab:green"}


def _sparsities(df: pd.DataFrame, method: str) -> list[int]:
    return sorted(int(c.rsplit("_", 1)[1]) for c in df.columns if c.startswith(f"{PRUNE}prune_acc_{method}_"))


def _prune_panel(ax, runs: list, title: str) -> None:
    dense = [final(r.metrics, f"{PRUNE}prune_acc_dense") for r in runs]
    for method, (label, color) in METHOD.items():
        sp = _sparsities(runs[0].metrics, method)
        if not sp:
            continue
        accs = np.array([[final(r.metrics, f"{PRUNE}prune_acc_{method}_{s}") for s in sp] for r in runs])
        ax.errorbar(sp, accs.mean(0), yerr=accs.std(0), color=color, marker="o", capsize=3, label=label)
    ax.axhline(np.mean(dense), color="k", ls=":", lw=1, label=f"dense ({np.mean(dense):.1f} %)")
    ax.set(xlabel="sparsity of the weight matrices (%)", ylabel="test accuracy after pruning (%)", title=title)
    ax.legend(fontsize=7, loc="lower left")


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure()
    ax = axes[0, 0]
    if any(c.startswith(f"{PRUNE}prune_acc_") for c in df.columns):
        from types import SimpleNamespace

        _prune_panel(ax, [SimpleNamespace(metrics=df)],
                     f"mfac ({cfg.get('scale')}): one-shot pruning, seed {cfg.get('seed')}")
    else:
        ev = df[df[TEST_ACC].notna()]
        ax.plot(ev.step, ev[TEST_ACC], color=OPT.get(optimizer_name(cfg), "k"))
        what = f"{optimizer_name(cfg)} lr={cfg['optimizer'].get('lr')}, seed {cfg.get('seed')}"
        ax.set(xlabel="step", ylabel="test accuracy (%)", title=f"mfac ({cfg.get('scale')}): {what}")
    return save(fig, Path(out_dir) / "mfac.png")


def _best_curves(done: list) -> dict[str, list]:
    """{mfac, adam, sgd: the runs of each one's best setting} (the arms claims.py compares)."""
    best = best_by_optimizer(done)
    refs = {"mfac": MFAC_ARM, **REFERENCES.get(done[0].scale, {})} if done else {}
    out = {}
    for name, (study, arm) in refs.items():
        if name not in best:
            continue
        rs = [r for r in done if r.is_in(study, arm) and TEST_ACC in r.metrics
              and all(str(r.cfg["optimizer"].get(k)) == v for k, v in best[name][1].items())]
        if rs:
            out[name] = rs
    return out


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.status.get("status") == "completed"]
    pruned = [r for r in done if prunes(r.cfg) and any(c.startswith(f"{PRUNE}prune_acc_") for c in r.metrics.columns)]
    groups = _best_curves(done)
    if not pruned and not groups:
        return []
    scale = done[0].cfg.get("scale")
    fig, axes = figure(ncols=3, width=4.8, height=3.8)
    if pruned:
        _prune_panel(axes[0, 0], pruned, f"mfac ({scale}): one-shot pruning (n={len(pruned)})")
        ax = axes[0, 1]
        for r in pruned:
            sp = _sparsities(r.metrics, "mfac")
            pred = [final(r.metrics, f"{PRUNE}prune_pred_mfac_{s}") for s in sp]
            act = [final(r.metrics, f"{PRUNE}prune_dloss_mfac_{s}") for s in sp]
            ax.scatter(pred, act, c=sp, cmap="viridis", vmin=40, vmax=95, s=25)
        lo, hi = min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.plot([lo, hi], [lo, hi], color="k", ls=":", lw=1, label="actual = predicted")
        ax.set(xscale="log", yscale="log", xlabel="OBS-predicted loss increase (sum of saliencies)",
               ylabel="actual train-loss increase",
               title=f"mfac ({scale}): OBS loss increase (colour: sparsity %)")
        ax.legend(fontsize=7)
    if groups:
        ax = axes[0, 2]
        best = best_by_optimizer(done)
        for name, rs in sorted(groups.items()):
            curves = pd.concat([r.metrics[r.metrics[TEST_ACC].notna()].set_index("step")[TEST_ACC] for r in rs], axis=1)
            mean, sd = curves.mean(axis=1), curves.std(axis=1).fillna(0)
            s = best[name][1]
            label = f"{name} lr={s.get('lr')}" + (f" damp={s.get('damp')} m={s.get('m')}" if name == "mfac" else "")
            ax.plot(mean.index, mean, color=OPT.get(name), label=f"{label} ({mean.iloc[-1]:.1f} %)")
            ax.fill_between(mean.index, mean - sd, mean + sd, color=OPT.get(name), alpha=0.2, lw=0)
        ax.set(xlabel="step", ylabel="test accuracy (%)", ylim=(80, 100),
               title=f"mfac ({scale}): best setting per optimizer")
        ax.legend(fontsize=7, loc="lower right")
    return [save(fig, Path(out_dir) / "mfac.png")]
