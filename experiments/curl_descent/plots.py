"""Figures in the style of the paper: test error against step on log-log axes (Figs. 3-5), and the
phase diagram of final error over expansion ratio x fraction of rule-flipped input neurons."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from experiments.curl_descent.claims import TEST, flipped_counts, speedup_pairs
from runner.report.style import figure, save

COSINE = "optimizer_stats/update_cosine"  # cos(update, -grad L), from the rule-flipped optimizer's stats


def _arch(cfg: dict) -> str:
    return f"{cfg['model']['activation']} {cfg['dataset']['d_in']}->{cfg['model']['hidden']}"


def _label(cfg: dict) -> str:
    i, h = flipped_counts(cfg)
    parts = [f"{i} input" * bool(i), f"{h} hidden" * bool(h)]
    return "GD" if (i, h) == (0, 0) else " + ".join(p for p in parts if p) + " flipped"


def _order(label: str) -> tuple:
    return (label != "GD", int(label.split()[0]) if label[0].isdigit() else 0, label)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=2, width=5.0, height=3.5)
    ax, ax2 = axes[0]
    d = df[df.step > 0]
    ax.loglog(d.step, d.loss, lw=1, label="train MSE")
    t = d[["step", TEST]].dropna()
    ax.loglog(t.step, t[TEST], lw=1.2, label="test MSE")
    ax.set(xlabel="step", ylabel="MSE", title=f"curl_descent ({cfg.get('scale')}): {_arch(cfg)}, {_label(cfg)}")
    ax.legend()
    if COSINE in d:
        ax2.plot(d.step, d[COSINE], lw=0.6, color="tab:purple")
        ax2.axhline(0, color="0.5", lw=0.6)
        ax2.set_xscale("log")
        ax2.set(xlabel="step", ylabel="cos(update, -grad L)", ylim=(-1.05, 1.05),
                title="alignment of the update with the gradient")
    return save(fig, Path(out_dir) / "learning_curves.png")


def _curves(ax, runs: list, title: str) -> None:
    groups = defaultdict(list)
    for r in runs:
        groups[_label(r.cfg)].append(r.metrics.set_index("step")[TEST].dropna())
    for i, (label, series) in enumerate(sorted(groups.items(), key=lambda kv: _order(kv[0]))):
        logs = np.log10(pd.concat(series, axis=1).clip(lower=1e-30))
        mean, sd = logs.mean(axis=1), logs.std(axis=1).fillna(0.0)
        idx = mean.index[mean.index > 0]
        ax.loglog(idx, 10 ** mean[idx], color=f"C{i}", lw=1.2, label=f"{label} (n={len(series)})")
        ax.fill_between(idx, 10 ** (mean - sd)[idx], 10 ** (mean + sd)[idx], color=f"C{i}", alpha=0.2, lw=0)
    ax.set(xlabel="step", ylabel="test MSE (geometric mean +- SD)", title=title)
    ax.legend(fontsize=7)


def _phase(ax, runs: list) -> None:
    pts = []
    for r in runs:
        c = r.cfg
        if c["model"]["activation"] != "linear" or flipped_counts(c)[1]:
            continue
        pts.append((c["model"]["hidden"] / c["dataset"]["d_in"], flipped_counts(c)[0] / c["dataset"]["d_in"],
                    max(float(r.metrics[TEST].dropna().iloc[-1]), 1e-16)))
    if not pts:
        return
    x, y, z = np.array(pts).T
    sc = ax.scatter(x, y, c=z, norm=LogNorm(vmin=1e-16, vmax=1), cmap="viridis", s=90, edgecolor="k")
    ax.figure.colorbar(sc, ax=ax, label="final test MSE")
    ax.set_xscale("log")
    ax.set(xlabel="expansion ratio (hidden / inputs)", ylabel="fraction of rule-flipped input neurons",
           title="phase diagram: converged (dark) vs stalled (bright)")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.status.get("status") == "completed" and TEST in r.metrics]
    if not done:
        return []
    scale = done[0].cfg.get("scale")
    contracting = [r for r in done if _arch(r.cfg) == "linear 100->10"]
    tanh = [r for r in done if r.cfg["model"]["activation"] == "tanh"]
    fig, axes = figure(ncols=3, width=4.8, height=3.6)
    if contracting:
        _curves(axes[0, 0], contracting, f"curl_descent ({scale}): contracting linear 100->10")
    _phase(axes[0, 1], done)
    if tanh:
        _curves(axes[0, 2], tanh, "tanh 100->10: one flipped hidden neuron vs GD")
        note = "\n".join(f"seed {s}: curl/GD at step 1000 = {c / g:.2f}" for s, c, g in speedup_pairs(done))
        axes[0, 2].text(0.03, 0.03, note, transform=axes[0, 2].transAxes, fontsize=7, va="bottom")
    return [save(fig, Path(out_dir) / "curl_descent.png")]
