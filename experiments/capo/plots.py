"""Figures in the style of the paper's Fig. 1 (accuracy against samples, one curve per method and
regime, here mean +- SD over seeds with diverged seeds marked x), with the masked-token fraction and the
predicted against the realised KL(pi_new || pi_old) of each update."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from runner.report.style import figure, plot_setting, save, suptitle

LABELS = {"grpo_conservative": "GRPO (conservative)", "grpo_aggressive": "GRPO (aggressive)",
          "capo_conservative": "CAPO (conservative)", "capo_aggressive": "CAPO (aggressive)"}


def _rl(df: pd.DataFrame) -> pd.DataFrame:
    return df.dropna(subset=["rl_step"]) if "rl_step" in df else df.iloc[:0]


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    r = _rl(df)
    fig, axes = figure(ncols=3, width=4.2, height=3.2)
    acc = r.dropna(subset=["accuracy"])
    axes[0, 0].plot(acc.samples, acc.accuracy, marker=".", label="greedy exact match")
    axes[0, 0].plot(r.samples, r.reward, lw=0.6, alpha=0.6, label="reward (sampled)")
    axes[0, 0].set(xlabel="samples (completions)", ylabel="accuracy", ylim=(0, 1))
    axes[0, 0].legend(fontsize=6)
    axes[0, 1].plot(r.rl_step, r.masked_fraction, label="masked")
    axes[0, 1].plot(r.rl_step, r.flagged_fraction, lw=0.7, ls="--", label="predicted KL > delta")
    axes[0, 1].plot(r.rl_step, r.entropy, lw=0.7, label="entropy (nats)")
    axes[0, 1].set(xlabel="RL step", ylabel="fraction of tokens / nats")
    axes[0, 1].legend(fontsize=6)
    kl = r[(r.kl_realised > 0) & (r.kl_predicted > 0) & (r.kl_predicted_head > 0)]
    if len(kl):  # a log-log panel of the steps that moved the policy
        axes[0, 2].loglog(kl.kl_realised, kl.kl_predicted, ".", ms=3, label="network displacement")
        axes[0, 2].loglog(kl.kl_realised, kl.kl_predicted_head, ".", ms=3, label="head only")
        lim = [kl.kl_realised.min(), kl.kl_realised.max()]
        axes[0, 2].plot(lim, lim, "k:", lw=0.8)
        axes[0, 2].legend(fontsize=6)
    axes[0, 2].set(xlabel="realised KL", ylabel="predicted KL")
    suptitle(fig, "capo", cfg.get("scale"), f"{cfg.get('arm') or ''} seed {cfg.get('seed')}")
    return save(fig, Path(out_dir) / "training.png")


class _RLRun:
    """A run seen through its RL rows (the curves start after the warm start)."""

    def __init__(self, run):
        self.run, self.metrics = run, _rl(run.metrics)

    def __getattr__(self, name):
        return getattr(self.run, name)


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    groups: dict = {}
    for r in runs:
        if r.arm in LABELS and "rl_step" in r.metrics:
            groups.setdefault(r.arm, []).append(_RLRun(r))
    if not groups:
        return []
    fig, axes = figure(ncols=3, width=4.4, height=3.4)
    for i, arm in enumerate(a for a in LABELS if a in groups):
        rs, color = groups[arm], f"C{i}"
        for r in rs:  # accuracy is logged every few steps: plot its rows only
            r.metrics = r.metrics.dropna(subset=["accuracy"]) if "accuracy" in r.metrics else r.metrics
        plot_setting(axes[0, 0], rs, "accuracy", LABELS[arm], color=color, x="samples")
        for r in rs:
            r.metrics = _rl(r.run.metrics)
        plot_setting(axes[0, 1], rs, "masked_fraction", LABELS[arm], color=color, x="samples")
        both = pd.concat([r.metrics for r in rs])
        axes[0, 2].loglog(both.kl_realised, both.kl_predicted, ".", ms=2, color=color, label=LABELS[arm])
    axes[0, 0].set(xlabel="samples (completions)", ylabel="greedy exact match", title="accuracy vs samples")
    axes[0, 1].set(xlabel="samples (completions)", ylabel="masked-token fraction", title="CAPO's mask")
    axes[0, 1].axhline(0.08, color="k", ls=":", lw=0.8)
    axes[0, 2].set(xlabel="realised KL(pi_new || pi_old)", ylabel="predicted KL", title="curvature model")
    lo, hi = axes[0, 2].get_xlim()
    axes[0, 2].plot([lo, hi], [lo, hi], "k:", lw=0.8)
    axes[0, 0].legend(fontsize=6)
    axes[0, 2].legend(fontsize=6)
    suptitle(fig, "capo", next(iter(groups.values()))[0].cfg.get("scale"), "GRPO vs CAPO, 2-digit addition")
    return [save(fig, Path(out_dir) / "capo.png")]
