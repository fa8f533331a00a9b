"""Figures: flows against GD iterates (the thesis' PF figures), and full-batch GD at fixed learning
rates against DAL on digits (h lambda_max at the edge of stability, loss, accuracy per lr)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.discretisation_drift.claims import _dal, _flows, final_test_acc, h_lambda, increase_fraction
from runner.report.style import figure, save

FLOW_STYLE = {"pf": ("principal flow", "-"), "ngf": ("gradient flow", "--"), "mf": ("1st-order modified flow", ":")}


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
    else:
        d = df[df.step > 0]
        ax.semilogy(d.step, d.loss, lw=0.8, color="k")
        ax.set(xlabel="GD step", ylabel="training loss (MSE, one-hot)", title=f"discretisation_drift ({scale}): {_label(cfg)}")
        h = h_lambda(df)
        ax2.plot(h.step, h.h, color="tab:red", label="h lambda_max")
        ax2.axhline(2, color="k", ls="--", lw=0.8, label="2 (stability edge)")
        if "optimizer_stats/eff_lr" in d:
            ax2.plot(d.step, d["optimizer_stats/eff_lr"], color="tab:blue", lw=0.6, alpha=0.7, label="DAL step size")
        ax2.set(xlabel="GD step", ylabel="h lambda_max", title="sharpness times step size")
        ax2.legend(fontsize=7)
    return save(fig, Path(out_dir) / "dynamics.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.status.get("status") == "completed" and len(r.metrics)]
    flows = [r for r in done if _flows(r.cfg)]
    nets = sorted([r for r in done if not _flows(r.cfg) and "sharpness/gd_ratio" in r.metrics],
                  key=lambda r: (_dal(r.cfg), float(r.cfg["optimizer"].get("p", 0)), float(r.cfg["optimizer"]["lr"])))
    if not flows and not nets:
        return []
    scale = done[0].cfg.get("scale")
    fig, grid = figure(ncols=2, nrows=2, width=6.4, height=4.2)
    axes = grid.reshape(1, 4)
    if flows:
        _flow_errors(axes[0, 0], flows)
        axes[0, 0].set_title(f"discretisation_drift ({scale}): flows vs GD iterates\n"
                             "(solid: PF, dashed: NGF, dotted: 1st-order modified flow)")
    for i, r in enumerate(nets):
        h = h_lambda(r.metrics)
        style = {"color": f"C{i}", "lw": 1.4 if _dal(r.cfg) else 0.9, "ls": "-" if _dal(r.cfg) else "--"}
        axes[0, 1].plot(h.step, h.h, label=_label(r.cfg), **style)
        d = r.metrics[r.metrics.step > 0]
        axes[0, 2].semilogy(d.step, d.loss, label=_label(r.cfg), **style)
    axes[0, 1].axhline(2, color="k", lw=0.8)
    axes[0, 1].set(xlabel="GD step", ylabel="h lambda_max (h: the step actually taken)", ylim=(0, 4),
                   title="digits MLP, full-batch GD: sharpness x step size (edge: 2)")
    axes[0, 1].legend(fontsize=6)
    axes[0, 2].set(xlabel="GD step", ylabel="training loss (MSE on one-hot)", title="training loss (fixed lr dashed, DAL solid)")
    axes[0, 2].legend(fontsize=6)
    if nets:
        ax, twin = axes[0, 3], axes[0, 3].twinx()
        fixed = [r for r in nets if not _dal(r.cfg)]
        lrs = [float(r.cfg["optimizer"]["lr"]) for r in fixed]
        ax.plot(lrs, [final_test_acc(r.metrics) for r in fixed], "o-", color="tab:green", label="fixed lr: test acc")
        twin.plot(lrs, [increase_fraction(r.metrics) for r in fixed], "s--", color="tab:purple",
                  label="fixed lr: fraction of loss increases")
        for r in (r for r in nets if _dal(r.cfg)):
            lr = float(r.metrics["optimizer_stats/eff_lr"].dropna().mean())
            ax.plot(lr, final_test_acc(r.metrics), "*", ms=12, color="tab:green")
            twin.plot(lr, increase_fraction(r.metrics), "*", ms=12, color="tab:purple")
            ax.annotate(_label(r.cfg), (lr, final_test_acc(r.metrics)), fontsize=7)
        ax.set_xscale("log")
        ax.set(xlabel="learning rate (DAL: mean step size, stars)", ylabel="final test accuracy (%)",
               title="final test accuracy and fraction of loss increases vs lr")
        twin.set_ylabel("fraction of steps raising the loss")
        lines = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=6, loc="lower left")
    return [save(fig, Path(out_dir) / "discretisation_drift.png")]


