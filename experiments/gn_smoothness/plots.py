"""Figures in the style of the paper's: f(x_k) - f* and gamma_k against iterations, one panel per
problem setting, methods coloured, every seed a thin line."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.gn_smoothness.claims import mu, variant
from runner.report.style import figure, save, suptitle
from runner.report.traces import by_setting, draw_seed_traces

LABELS = {"exact": "exact Hessian (GNS)", "weighted_gn": "weighted Gauss-Newton (GNS)", "fisher": "Fisher term (GNS)",
          "precond_gradient": "B-preconditioned gradient", "gradient": "gradient method"}
COLORS = {"exact": "tab:blue", "weighted_gn": "tab:orange", "fisher": "tab:orange", "precond_gradient": "tab:green",
          "gradient": "tab:gray"}
ORDER = list(LABELS)


def problem_kind(cfg: dict) -> str:
    """The problem's class name (LogSumExp, Logistic, PowerResidual): a panel label."""
    return cfg["problem"]["_target_"].rsplit(".", 1)[-1]


def setting(cfg: dict) -> str:
    p = cfg["problem"]
    kind = problem_kind(cfg)
    if kind == "LogSumExp":
        size = f"n=m={p['n']}" if p["n"] == p["m"] else f"n={p['n']}, m={p['m']}"
        return f"LogSumExp {size}, μ={p['mu']:g}"
    if kind == "Logistic":
        return f"logistic {p['dataset']}, reg={p['reg']:g}"
    return f"{kind} " + ", ".join(f"{k}={v}" for k, v in p.items() if k != "_target_")


def _draw(ax_gap, ax_gamma, df: pd.DataFrame, cfg: dict, label: str | None, alpha: float = 1.0) -> None:
    style = dict(color=COLORS.get(variant(cfg)), alpha=alpha, lw=1.1)
    ax_gap.semilogy(df.step, df.loss.clip(lower=1e-16), label=label, **style)
    ax_gamma.semilogy(df.step, df.gamma, **style)


def _decorate(ax_gap, ax_gamma, cfg: dict, title: str) -> None:
    if cfg["trainer"].get("tol"):
        ax_gap.axhline(cfg["trainer"]["tol"], color="0.5", ls=":", lw=0.8)
    ax_gap.set(xscale="log", xlabel="iteration (log)", ylabel="$f(x_k) - f^*$", title=title)
    ax_gamma.set(xscale="log", xlabel="iteration (log)", ylabel=r"$\gamma_k$ (adaptive)")


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=2, width=4.8, height=3.5)
    _draw(axes[0, 0], axes[0, 1], df, cfg, LABELS.get(variant(cfg)))
    suptitle(fig, "gn_smoothness", cfg.get("scale"), LABELS.get(variant(cfg)))
    _decorate(axes[0, 0], axes[0, 1], cfg, f"{setting(cfg)}, seed {cfg.get('seed')}")
    axes[0, 0].legend(loc="lower left")
    return save(fig, Path(out_dir) / "convergence.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    groups = by_setting(runs, setting, "gamma")
    if not groups:
        return []
    cfg_of = {k: rs[0].cfg for k, rs in groups.items()}
    keys = sorted(groups, key=lambda k: (problem_kind(cfg_of[k]) != "LogSumExp", -(mu(cfg_of[k]) or 0), k))
    fig, axes = figure(ncols=len(keys), nrows=2, width=4.6, height=3.4)
    for col, key in enumerate(keys):
        draw_seed_traces(groups[key], lambda c: LABELS[variant(c)],
                         lambda r, lab, col=col: _draw(axes[0, col], axes[1, col], r.metrics, r.cfg, lab, alpha=0.8),
                         order=lambda c: ORDER.index(variant(c)))
        cfg = groups[key][0].cfg
        _decorate(axes[0, col], axes[1, col], cfg, key)
        axes[0, col].legend(loc="lower left", fontsize=7)
    suptitle(fig, "gn_smoothness", cfg_of[keys[0]].get("scale"), "function residual and adaptive γ per iteration")
    return [save(fig, Path(out_dir) / "gn_smoothness.png")]
