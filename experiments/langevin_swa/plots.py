"""Figures in the style of the paper's Figs. 1-2: overlap with theta* against Langevin time for the last
iterate, the time-averaged iterate and the top eigenvector of the averaged theta theta^T (runs at the
paper's n = 10 d^ceil(k*/2)); and the sample-size sweep of the headline claims: seed-mean overlap of the
averaged and the last iterate against c = n / d^ceil(k*/2), one line per d."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

from experiments.langevin_swa.claims import AVG, LAST, RECOVERY, SECOND, at_paper_n, sweep_table
from runner.report.style import figure, save

SERIES = {LAST: ("last iterate |theta_t . theta*|", "tab:gray"),
          AVG: ("time average (first order)", "tab:blue"),
          SECOND: ("top eigvec of mean theta theta^T (second order)", "tab:red")}


def _time(df: pd.DataFrame, cfg: dict) -> pd.Series:
    return df.step * float(cfg["optimizer"]["lr"])


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(width=5.6, height=3.6)
    ax = axes[0, 0]
    d = cfg["dataset"]
    for col, (label, color) in SERIES.items():
        s = df[["step", col]].dropna()
        ax.plot(_time(s, cfg), s[col], color=color, lw=1.0 if col == LAST else 1.6, label=label)
    ax.axhline(d["dim"] ** -0.5, color="k", ls=":", lw=0.8, label="1/sqrt(d) (random direction)")
    ax.set(xlabel="Langevin time t = step x dt", ylabel="overlap with theta*", ylim=(0, 1.02),
           title=f"langevin_swa ({cfg.get('scale')}): k*={d['k']}, d={d['dim']}, n={d['n_train']}, "
                 f"seed {cfg.get('seed')}")
    ax.legend(loc="upper left", fontsize=7)
    return save(fig, Path(out_dir) / "overlaps.png")


def _trajectories(runs: list, out_dir: Path) -> list[Path]:
    groups = defaultdict(list)
    for r in runs:
        if r.status.get("status") == "completed" and LAST in r.metrics and at_paper_n(r.cfg):
            d = r.cfg["dataset"]
            groups[(d["k"], d["dim"], d["n_train"])].append(r)
    if not groups:
        return []
    fig, axes = figure(ncols=len(groups), width=5.2, height=3.6)
    for ax, ((k, dim, n), rs) in zip(axes[0], sorted(groups.items())):
        for col, (label, color) in SERIES.items():
            curves = pd.concat([r.metrics.set_index("step")[col].dropna() for r in rs], axis=1)
            mean, sd = curves.mean(axis=1), curves.std(axis=1).fillna(0.0)
            t = mean.index * float(rs[0].cfg["optimizer"]["lr"])
            ax.plot(t, mean, color=color, lw=1.4, label=label)
            ax.fill_between(t, mean - sd, mean + sd, color=color, alpha=0.2, lw=0)
        ax.axhline(dim ** -0.5, color="k", ls=":", lw=0.8, label="1/sqrt(d)")
        ax.set(xlabel="Langevin time t", ylabel=f"overlap with theta* (mean +- SD, {len(rs)} seeds)", ylim=(0, 1.02),
               title=f"langevin_swa ({rs[0].cfg.get('scale')}): k*={k}, d={dim}, n={n}")
        ax.legend(loc="center right", fontsize=7, framealpha=0.8, frameon=True)
    return [save(fig, Path(out_dir) / "langevin_swa.png")]


def _sweep(runs: list, out_dir: Path) -> list[Path]:
    tables = sweep_table(runs)
    if not tables:
        return []
    fig, axes = figure(width=7.6, height=3.8)
    ax = axes[0, 0]
    shades = ["tab:blue", "tab:purple", "tab:cyan", "tab:green"]
    for (dim, t), color in zip(tables.items(), shades):
        ax.plot(t.c, t.avg, "o-", color=color, lw=1.6, label=f"time average, d={dim}")
        ax.plot(t.c, t["last"], "s--", color=color, lw=1.0, alpha=0.7, label=f"last iterate (2nd-half mean), d={dim}")
    ax.axhline(RECOVERY, color="k", ls=":", lw=0.8, label=f"recovery level {RECOVERY}")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="c = n / d^2 (the paper's experiments: c = 10)", ylabel="overlap with theta* (seed mean)",
           ylim=(0, 1.02), title="langevin_swa: k*=3, sample-size sweep")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    return [save(fig, Path(out_dir) / "langevin_swa_sweep.png")]


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    return _trajectories(runs, out_dir) + _sweep(runs, out_dir)
