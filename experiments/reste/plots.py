"""Figures in the style of the paper: the two indicators (estimating error, gradient variance) against
o_end, mean +- SD over seeds (the paper's equilibrium plot), test accuracy against o_end, and training
curves (test accuracy and o against step) of STE and ReSTE."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.reste.claims import ACC, ERR, O_COL, VAR, last, o_end, tradeoff_table
from runner.report.style import figure, save


def _label(cfg: dict) -> str:
    est = cfg["trainer"]["estimator"]
    if est.get("kind") == "ste":
        return "STE"
    return f"ReSTE o={o_end(cfg):g}" + (" fixed" if est.get("schedule") == "fixed" else " (1 -> o_end)")


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=3, width=4.2, height=3.3)
    a, b, c = axes[0]
    d = df[df.step > 0]
    a.plot(d.step, d.loss, lw=0.8, label="train loss")
    a.set(xlabel="step", ylabel="loss", yscale="log", title=f"reste ({cfg.get('scale')}): {_label(cfg)}")
    t = df[["step", ACC]].dropna()
    a2 = a.twinx()
    a2.plot(t.step, t[ACC], color="tab:green", lw=1.2, label="test acc")
    a2.set_ylabel("test accuracy (%)")
    e = d[["step", ERR, VAR, O_COL]].dropna()
    b.plot(e.step, e[ERR], lw=1)
    b.set(xlabel="step", ylabel="estimating error sum ||f_o(w) - sign(w)||", title="estimating error")
    c.semilogy(e.step, e[VAR], lw=0.8)
    c.set(xlabel="step", ylabel="gradient variance sum Var(|g|)", title=f"gradient variance (o now {e[O_COL].iloc[-1]:.2f})")
    return save(fig, Path(out_dir) / "learning_curves.png")


def _tradeoff(axes, runs: list) -> None:
    table = tradeoff_table(runs)
    if table.empty:
        return
    g = table.groupby("o_end")
    for ax, col, name in ((axes[0], "err", "estimating error"), (axes[1], "var", "gradient variance Var(|g|)")):
        m, s = g[col].mean(), g[col].std().fillna(0.0)
        ax.errorbar(m.index, m.values, yerr=s.values, marker="o", capsize=3)
        ax.set(xlabel="o_end (o fixed)", ylabel=f"{name}, mean over training", title=f"{name} vs o_end (n={g.size().min()} seeds)")
    axes[1].set_yscale("log")
    accs = defaultdict(list)
    for r in runs:
        if r.completed and r.is_in("tradeoff") and ACC in r.metrics:
            accs[o_end(r.cfg)].append(last(r.metrics, ACC))
    os_ = sorted(accs)
    axes[2].errorbar(os_, [np.mean(accs[o]) for o in os_], yerr=[np.std(accs[o]) for o in os_], marker="o",
                     capsize=3, label="o fixed")
    for r_arm, marker in (("ste", "s"), ("reste", "^")):
        vals = [last(r.metrics, ACC) for r in runs if r.completed and r.is_in("accuracy", r_arm) and ACC in r.metrics]
        if vals:
            x = 1.0 if r_arm == "ste" else max(o_end(r.cfg) for r in runs if r.is_in("accuracy", "reste"))
            axes[2].errorbar([x], [np.mean(vals)], yerr=[np.std(vals)], marker=marker, capsize=3, ls="none",
                             label="STE" if r_arm == "ste" else "ReSTE o: 1 -> o_end")
    axes[2].set(xlabel="o_end", ylabel="final test accuracy (%)", title="accuracy vs o_end (mean +- SD)")
    axes[2].legend(fontsize=7)


def _curves(axes, runs: list) -> None:
    groups = defaultdict(list)
    for r in runs:
        if r.completed and r.is_in("accuracy") and ACC in r.metrics:
            groups[_label(r.cfg)].append(r)
    for i, (label, rs) in enumerate(sorted(groups.items())):
        acc = pd.concat([r.metrics.set_index("step")[ACC].dropna() for r in rs], axis=1)
        m, s = acc.mean(axis=1), acc.std(axis=1).fillna(0.0)
        axes[0].plot(m.index, m.values, color=f"C{i}", lw=1.2, label=f"{label} (n={len(rs)})")
        axes[0].fill_between(m.index, m - s, m + s, color=f"C{i}", alpha=0.2, lw=0)
        o = rs[0].metrics[["step", O_COL]].dropna()
        axes[1].plot(o.step, o[O_COL], color=f"C{i}", lw=1.2, label=label)
    axes[0].set(xlabel="step", ylabel="test accuracy (%)", title="training curves (mean +- SD)")
    axes[1].set(xlabel="step", ylabel="o", title="o schedule")
    for ax in axes:
        ax.legend(fontsize=7)


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.completed]
    if not done:
        return []
    fig, axes = figure(ncols=5, width=4.0, height=3.4)
    _tradeoff(axes[0, :3], done)
    _curves(axes[0, 3:], done)
    return [save(fig, Path(out_dir) / "reste.png")]
