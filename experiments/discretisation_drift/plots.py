"""Figures: flows against GD iterates (the PF figures), fixed-lr GD at the edge of stability, and
DAL-p: q = |Hg|/|g| and the step per step, the training loss, and the trade-off over p (share of
loss-increasing steps, final test accuracy)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.discretisation_drift.claims import _dal, _flows, final_test_acc, h_lambda, increase_fraction
from runner.report.style import figure, save

FLOW_STYLE = {"pf": ("principal flow", "-"), "ngf": ("gradient flow", "--"), "mf": ("1st-order modified flow", ":")}
Q, ETA = "optimizer_stats/hg_ratio", "optimizer_stats/eff_lr"


def _label(cfg: dict) -> str:
    o = cfg["optimizer"]
    return f"DAL p={o['p']:g}" if _dal(cfg) else f"fixed lr {o['lr']:g}"


def _flow_errors(ax, runs: list) -> None:
    for i, r in enumerate(sorted(runs, key=lambda r: float(r.cfg["trainer"]["h"]))):
        t = r.cfg["trainer"]
        name = f"{t['landscape']}, h={t['h']:g} (h l_max={float(r.metrics.h_lambda_max.iloc[-1]):.2g})"
        for f, (label, ls) in FLOW_STYLE.items():
            if f"err_{f}" in r.metrics:
                ax.semilogy(r.metrics.step, r.metrics[f"err_{f}"].clip(lower=1e-17), color=f"C{i}", ls=ls,
                            label=f"{label}: {name}" if f == "pf" else (label if i == 0 else None))
    ax.set(xlabel="GD step k (flow time k h)", ylabel="|theta_flow - theta_GD| / |theta_GD|",
           title="flows vs GD iterates")
    ax.legend(fontsize=6, loc="center right")


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=2, width=5.0, height=3.5)
    ax, ax2 = axes[0]
    scale = cfg.get("scale")
    if _flows(cfg):
        run = type("R", (), {"cfg": cfg, "metrics": df})
        _flow_errors(ax, [run])
        ax2.semilogy(df.step, df.loss.abs().clip(lower=1e-30), color="k")
        ax2.set(xlabel="GD step", ylabel="E(theta_GD)", title=f"discretisation_drift ({scale}): {cfg['trainer']['landscape']}")
        return save(fig, Path(out_dir) / "dynamics.png")
    d = df[df.step > 0]
    ax.semilogy(d.step, d.loss, lw=0.8, color="k")
    ax.set(xlabel="step", ylabel=f"training loss ({cfg['trainer'].get('loss')})",
           title=f"discretisation_drift ({scale}): {_label(cfg)}")
    if "sharpness/gd_ratio" in df:
        h = h_lambda(df)
        ax2.plot(h.step, h.h, color="tab:red", label="h lambda_max")
        ax2.axhline(2, color="k", ls="--", lw=0.8, label="2 (stability edge)")
        ax2.set(xlabel="step", ylabel="h lambda_max", title="sharpness times step size")
    if Q in df:
        s = df.dropna(subset=[Q])
        ax2.semilogy(s.step, s[Q], color="tab:purple", lw=0.7, label="q = |Hg|/|g|")
        ax2.semilogy(s.step, s[ETA], color="tab:blue", lw=0.7, label="DAL step eta")
        ax2.axhline(1, color="k", ls=":", lw=0.8)
        ax2.set(xlabel="step", title="DAL: q and its step eta = min(2 q^-p, 5)")
    ax2.legend(fontsize=7)
    return save(fig, Path(out_dir) / "dynamics.png")


def _dal_panels(axes, dal: list) -> None:
    ax_q, ax_loss, ax_trade = axes
    seed0 = min(r.cfg.get("seed", 0) for r in dal)
    for r in sorted((r for r in dal if r.cfg.get("seed", 0) == seed0), key=lambda r: float(r.cfg["optimizer"]["p"])):
        p = float(r.cfg["optimizer"]["p"])
        s = r.metrics.dropna(subset=[Q])
        line = ax_q.semilogy(s.step, s[Q], lw=0.8, label=f"q, p={p:g}")[0]
        ax_q.semilogy(s.step, s[ETA], lw=0.8, ls="--", color=line.get_color(), label=f"eta, p={p:g}")
        d = r.metrics[r.metrics.step > 0]
        ax_loss.semilogy(d.step, d.loss, lw=0.8, color=line.get_color(), label=f"DAL p={p:g}")
    ax_q.axhline(1, color="k", lw=0.8, ls=":")
    ax_q.set(xlabel="step", ylabel="q = |Hg|/|g| (solid), eta (dashed)", title=f"DAL-p, seed {seed0}: q and the step")
    ax_q.legend(fontsize=6, ncol=2)
    ax_loss.set(xlabel="step", ylabel="training loss (cross-entropy)", title=f"DAL-p, seed {seed0}: training loss")
    ax_loss.legend(fontsize=7)
    twin = ax_trade.twinx()
    for i, r in enumerate(sorted(dal, key=lambda r: (r.cfg.get("seed", 0), float(r.cfg["optimizer"]["p"])))):
        p = float(r.cfg["optimizer"]["p"])
        ax_trade.plot(p, increase_fraction(r.metrics), "o", color="tab:purple", ms=4,
                      label="share of loss-increasing steps" if i == 0 else None)
        twin.plot(p, final_test_acc(r.metrics), "s", color="tab:green", ms=4)
    by_p = pd.DataFrame([{"p": float(r.cfg["optimizer"]["p"]), "inc": increase_fraction(r.metrics),
                          "acc": final_test_acc(r.metrics)} for r in dal]).groupby("p").mean()
    ax_trade.plot(by_p.index, by_p.inc, "-", color="tab:purple")
    twin.plot(by_p.index, by_p.acc, "-", color="tab:green", label="final test accuracy (%)")
    ax_trade.set(xlabel="DAL power p", ylabel="share of loss-increasing steps", xscale="log",
                 title="DAL-p trade-off (dots: seeds, line: mean)")
    twin.set_ylabel("final test accuracy (%)")
    lines, more = ax_trade.get_legend_handles_labels(), twin.get_legend_handles_labels()
    ax_trade.legend(lines[0] + more[0], lines[1] + more[1], fontsize=6, loc="best")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.status.get("status") == "completed" and len(r.metrics)]
    flows = [r for r in done if _flows(r.cfg)]
    fixed = sorted([r for r in done if not _flows(r.cfg) and "sharpness/gd_ratio" in r.metrics],
                   key=lambda r: float(r.cfg["optimizer"]["lr"]))
    dal = [r for r in done if _dal(r.cfg) and Q in r.metrics and "test_eval/test_acc" in r.metrics]
    if not flows and not fixed and not dal:
        return []
    scale = done[0].cfg.get("scale")
    fig, grid = figure(ncols=3, nrows=2, width=4.6, height=3.6)
    if flows:
        _flow_errors(grid[0, 0], flows)
        grid[0, 0].set_title(f"discretisation_drift ({scale}): flows vs GD iterates\n"
                             "(solid: PF, dashed: NGF, dotted: 1st-order modified flow)")
    for i, r in enumerate(fixed):
        h = h_lambda(r.metrics)
        grid[0, 1].plot(h.step, h.h, color=f"C{i}", lw=0.9, label=_label(r.cfg))
        d = r.metrics[r.metrics.step > 0]
        grid[0, 2].semilogy(d.step, d.loss, color=f"C{i}", lw=0.9, label=_label(r.cfg))
    grid[0, 1].axhline(2, color="k", lw=0.8)
    grid[0, 1].set(xlabel="GD step", ylabel="h lambda_max", ylim=(0, 4),
                   title="fixed-lr GD (MSE): sharpness x lr (edge: 2)")
    grid[0, 2].set(xlabel="GD step", ylabel="training loss (MSE on one-hot)", title="fixed-lr GD: training loss")
    for ax in grid[0, 1:]:
        if fixed:
            ax.legend(fontsize=6)
    if dal:
        _dal_panels(grid[1], dal)
    return [save(fig, Path(out_dir) / "discretisation_drift.png")]
