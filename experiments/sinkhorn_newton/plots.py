"""Figures in the style of the paper's Fig. 2: marginal error against iterations and wall time."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.sinkhorn_newton.claims import eta, method
from runner.report.style import figure, save, suptitle
from runner.report.traces import by_setting, draw_seed_traces

STYLE = {"sinkhorn": dict(color="tab:blue", label="Sinkhorn (log-domain)"),
         "sns": dict(color="tab:red", label="SNS")}


def _label(cfg: dict) -> str:
    name = method(cfg)
    label = STYLE.get(name, {}).get("label", name)
    if name == "sns":
        label += f", keep {cfg['algorithm']['keep_per_row']:g}n"
    return label


def _problem(cfg: dict) -> str:
    p = cfg["problem"]
    kind = p["_target_"].rsplit(".", 1)[-1]
    return f"{kind} n={p.get('n')}, η={p['eta']:g}"


def _curves(ax_it, ax_t, df: pd.DataFrame, cfg: dict, label: str | None, alpha: float = 1.0) -> None:
    style = dict(color=STYLE.get(method(cfg), {}).get("color"), alpha=alpha, lw=1.1,
                 ls="--" if method(cfg) == "sns" and cfg["algorithm"].get("keep_per_row", 2) != 2 else "-")
    ax_it.semilogy(df.step, df.marginal_err, label=label, **style)
    ax_t.semilogy(df.time_s - df.time_s.iloc[0], df.marginal_err, **style)


def _decorate(ax_it, ax_t, cfg: dict, title: str) -> None:
    tol = cfg["trainer"].get("tol")
    for ax in (ax_it, ax_t):
        if tol:
            ax.axhline(tol, color="0.5", ls=":", lw=0.8)
        ax.set_ylabel(r"marginal error $\|P1-r\|_1+\|P^T1-c\|_1$")
    ax_it.set(xscale="log", xlabel="iteration (log)", title=title)
    ax_t.set(xscale="log", xlabel="wall time since the first iteration (s, log)")


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=2, width=5.0, height=3.6)
    _curves(axes[0, 0], axes[0, 1], df, cfg, _label(cfg))
    if "newton" in df and df.newton.max() == 1:
        axes[0, 0].axvline(df.step[df.newton == 1].iloc[0], color="0.4", ls="--", lw=0.8, label="Newton stage starts")
    suptitle(fig, "sinkhorn_newton", cfg.get("scale"), _label(cfg))
    _decorate(axes[0, 0], axes[0, 1], cfg, f"{_problem(cfg)}, seed {cfg.get('seed')}")
    axes[0, 0].legend(loc="lower left")
    return save(fig, Path(out_dir) / "convergence.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    """One column per problem setting, every seed a thin line, methods coloured."""
    groups = by_setting(runs, _problem, "marginal_err")
    if not groups:
        return []
    keys = sorted(groups, key=lambda k: (eta(groups[k][0].cfg), k))
    fig, axes = figure(ncols=len(keys), nrows=2, width=5.0, height=3.4)
    for col, key in enumerate(keys):
        draw_seed_traces(groups[key], _label,
                         lambda r, lab: _curves(axes[0, col], axes[1, col], r.metrics, r.cfg, lab, alpha=0.75))
        cfg = groups[key][0].cfg
        _decorate(axes[0, col], axes[1, col], cfg, key)
        axes[0, col].legend(loc="lower left", fontsize=7)
    suptitle(fig, "sinkhorn_newton", groups[keys[0]][0].cfg.get("scale"), "SNS vs log-domain Sinkhorn")
    return [save(fig, Path(out_dir) / "sinkhorn_newton.png")]
