"""Figures in the style of the paper's HO figures: UL validation loss against iterations, here also
against oracle calls (samples drawn), one curve per (method, I, B) as mean +- SD over seeds, diverged
runs marked x; and the AUC of the learned weights for the flipped labels."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.bsvrb.claims import setting
from runner.report.style import figure, plot_setting, save, suptitle

NAMES = {"bsvrb_v1": "BSVRBv1", "bsvrb_v2": "BSVRBv2", "rsvrb": "RSVRB"}


def label(cfg: dict) -> str:
    method, i, b = setting(cfg)
    return f"{NAMES.get(method, method)} I={i} B={b}"


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=2, width=4.6, height=3.4)
    axes[0, 0].plot(df.iteration, df.loss, label="validation (UL)")
    axes[0, 0].plot(df.iteration, df.test_loss, label="test", ls="--")
    axes[0, 0].set(xlabel="iteration", ylabel="loss (mean over blocks)")
    axes[0, 0].legend()
    if "auc_noisy" in df:
        axes[0, 1].plot(df.iteration, df.auc_noisy)
        axes[0, 1].set(xlabel="iteration", ylabel="AUC of -p for flipped labels")
    suptitle(fig, "bsvrb", cfg.get("scale"), f"{label(cfg)}, seed {cfg.get('seed')}")
    return save(fig, Path(out_dir) / "convergence.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    groups: dict = {}
    for r in runs:
        if "loss" in r.metrics and "trainer" in r.cfg and "block_batch" in r.cfg["trainer"]:
            groups.setdefault(label(r.cfg), []).append(r)
    if not groups:
        return []
    fig, axes = figure(ncols=3, width=4.6, height=3.6)
    for i, (name, rs) in enumerate(sorted(groups.items())):
        color = f"C{i % 10}"
        plot_setting(axes[0, 0], rs, "loss", name, color=color, x="iteration")
        plot_setting(axes[0, 1], rs, "loss", name, color=color, x="samples_calls")
        if all("auc_noisy" in r.metrics for r in rs):
            plot_setting(axes[0, 2], rs, "auc_noisy", name, color=color, x="iteration")
    axes[0, 0].set(xlabel="iteration", ylabel="UL validation loss", title="vs iterations")
    axes[0, 1].set(xlabel="oracle calls (samples drawn)", ylabel="UL validation loss", xscale="log",
                   title="vs oracle calls")
    axes[0, 2].set(xlabel="iteration", ylabel="AUC (noisy samples)", title="weights flag noisy labels")
    axes[0, 0].legend(fontsize=6)
    suptitle(fig, "bsvrb", next(iter(groups.values()))[0].cfg.get("scale"), "multi-block HO")
    return [save(fig, Path(out_dir) / "bsvrb.png")]
