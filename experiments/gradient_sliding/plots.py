"""Figures in the paper's style: relative objective gap against grad f calls and against subgradient
calls of h, per method (every seed a thin line), and the grad f count to eps = 1e-2, 1e-3, 1e-4 against
log10(1/eps) with its fitted slope (a straight line is the O(log 1/eps) claim)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.gradient_sliding.claims import EPSILONS, calls_to, method, slope_per_decade
from runner.report.style import figure, save, suptitle
from runner.report.traces import draw_seed_traces

STYLE = {"subgradient": dict(color="tab:blue", label="proximal subgradient"),
         "restart_gs": dict(color="tab:red", label="restart-based GS (M-GS)")}


def _label(cfg: dict) -> str:
    return STYLE.get(method(cfg), {}).get("label", method(cfg))


def _curves(axes, df: pd.DataFrame, cfg: dict, label: str | None, alpha: float = 1.0) -> None:
    style = dict(color=STYLE.get(method(cfg), {}).get("color"), alpha=alpha, lw=1.1)
    gap = df.rel_gap.clip(lower=1e-16)
    axes[0].loglog(df.grad_f_calls, gap, label=label, **style)
    axes[1].loglog(df.subgrad_calls, gap, **style)
    counts = [calls_to(df, e) for e in EPSILONS]
    if all(map(np.isfinite, counts)):
        slope = slope_per_decade(df)
        axes[2].plot([2, 3, 4], counts, "o-", label=f"{label}: {slope:.0f} per decade" if label else None, **style)


def _decorate(axes, cfg: dict) -> None:
    for ax in axes[:2]:
        ax.axhline(1e-3, color="0.5", ls=":", lw=0.8)
        ax.set_ylabel(r"relative gap $(\Psi(x)-\Psi^*)/(\Psi(x_0)-\Psi^*)$")
    axes[0].set_xlabel(r"$\nabla f$ evaluations")
    axes[1].set_xlabel(r"subgradient evaluations of $h$")
    axes[2].set(xlabel=r"$\log_{10}(1/\varepsilon)$", ylabel=r"$\nabla f$ evaluations to $\varepsilon$", yscale="log",
                xticks=[2, 3, 4])


def _problem(cfg: dict) -> str:
    p = cfg["problem"]
    return f"A {p['m']}x{p['n']}, λ={p['lam']:g}, μ={p['mu']:g}" + (f", noise {p['subgrad_noise']:g}"
                                                                    if p.get("subgrad_noise") else "")


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=3, width=4.6, height=3.6)
    _curves(axes[0], df, cfg, _label(cfg))
    _decorate(axes[0], cfg)
    axes[0, 0].legend(loc="lower left")
    axes[0, 2].legend(loc="upper left", fontsize=7)
    suptitle(fig, "gradient_sliding", cfg.get("scale"), f"{_label(cfg)}, {_problem(cfg)}, seed {cfg.get('seed')}")
    return save(fig, Path(out_dir) / "convergence.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    """One row per problem setting: gap vs grad f calls, gap vs subgradient calls, grad f count vs log(1/eps)."""
    groups: dict[str, list] = {}
    for r in runs:
        if r.status.get("status") == "completed" and "rel_gap" in r.metrics:
            groups.setdefault(_problem(r.cfg), []).append(r)
    if not groups:
        return []
    keys = sorted(groups)
    fig, axes = figure(ncols=3, nrows=len(keys), width=4.6, height=3.6)
    for row, key in enumerate(keys):
        draw_seed_traces(groups[key], _label, lambda r, lab: _curves(axes[row], r.metrics, r.cfg, lab, alpha=0.8))
        _decorate(axes[row], groups[key][0].cfg)
        axes[row, 0].set_title(key, fontsize=9)
        axes[row, 0].legend(loc="lower left", fontsize=7)
        axes[row, 2].legend(loc="upper left", fontsize=6)
    suptitle(fig, "gradient_sliding", groups[keys[0]][0].cfg.get("scale"),
             "relative gap vs oracle calls (RF-SGS not run: schedules unreadable)")
    return [save(fig, Path(out_dir) / "gradient_sliding.png")]
