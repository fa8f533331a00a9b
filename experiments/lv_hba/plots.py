"""Figures in the paper's style: the toy's relative error |x - x*| / |x*| (log scale) against UL
gradient calls (= iterations; three LL gradients each), divergent runs marked where they stopped;
the constraint violation; and, for the SVM study, validation/test accuracy against iterations with the
tuned fixed-C baseline (the paper plots loss and accuracy against time)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from runner.report.style import figure, save


def _label(cfg: dict) -> str:
    t = cfg["trainer"]
    return f"alpha=eta={t['alpha']:g}, seed {cfg.get('seed', 0)}"


def _toy(ax, ax2, runs: list) -> None:
    for i, r in enumerate(runs):
        d = r.metrics.dropna(subset=["grad_f_calls"])
        d = d[d.loss < float("inf")]
        diverged = r.status.get("status") == "diverged"
        line = ax.semilogy(d.grad_f_calls, d.rel_error, lw=0.9, color=f"C{i}",
                           label=_label(r.cfg) + (" (diverged)" if diverged else ""))[0]
        if diverged and len(d):
            ax.semilogy(d.grad_f_calls.iloc[-1], d.rel_error.iloc[-1], "x", ms=9, mew=2, color=line.get_color())
        ax2.semilogy(d.grad_f_calls, d.violation.cummax().clip(lower=1e-17), lw=0.8, color=line.get_color())
    ax.axhline(2e-2, color="k", ls="--", lw=0.8, label="L1 threshold 2e-2")
    ax.set(xlabel="UL gradient calls (= iterations; + 3x LL gradients, 0 Hessian-vector products)",
           ylabel="|x - x*| / |x*|", title="LV-HBA on the coupled-constraint toy (x marks divergence)")
    ax.legend(fontsize=6)
    ax2.set(xlabel="UL gradient calls", ylabel="running max of max(0, g(x, y))", title="feasibility of the iterates (L2 bar: 1e-8)")
    ax2.axhline(1e-8, color="k", ls="--", lw=0.8)


def _svm(ax, runs: list) -> None:
    for i, r in enumerate(runs):
        d = r.metrics.dropna(subset=["test_acc"])
        ax.plot(d.grad_f_calls, d.test_acc, lw=0.9, color=f"C{i}", label=f"{r.cfg['trainer']['dataset']} seed {r.cfg.get('seed')}: test")
        ax.plot(d.grad_f_calls, d.val_acc, lw=0.7, ls=":", color=f"C{i}")
        ax.axhline(d.baseline_test_acc.iloc[-1], color=f"C{i}", ls="--", lw=0.8)
    ax.set(xlabel="UL gradient calls (= iterations)", ylabel="accuracy (%)",
           title="SVM HO accuracy\n(test solid, val dotted, fixed-C test dashed)")
    ax.legend(fontsize=6)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=2, width=5.0, height=3.5)
    run = type("R", (), {"cfg": cfg, "metrics": df, "status": {}})
    if "rel_error" in df:
        _toy(axes[0][0], axes[0][1], [run])
    else:
        _svm(axes[0][0], [run])
        d = df.dropna(subset=["F"])
        axes[0][1].semilogy(d.step, d.violation.clip(lower=1e-17), color="k")
        axes[0][1].set(xlabel="iteration", ylabel="max(0, g(x, y))", title="feasibility (QP projection)")
    return save(fig, Path(out_dir) / "lv_hba.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.status.get("status") in ("completed", "diverged") and len(r.metrics)]
    toy = [r for r in done if "rel_error" in r.metrics]
    svm = [r for r in done if "test_acc" in r.metrics]
    if not toy and not svm:
        return []
    fig, axes = figure(ncols=3, width=5.0, height=3.8)
    if toy:
        _toy(axes[0][0], axes[0][1], sorted(toy, key=lambda r: (r.cfg["trainer"]["alpha"], r.cfg.get("seed", 0))))
    if svm:
        _svm(axes[0][2], sorted(svm, key=lambda r: (r.cfg["trainer"]["dataset"], r.cfg.get("seed", 0)))[:9])
    return [save(fig, Path(out_dir) / "lv_hba.png")]
