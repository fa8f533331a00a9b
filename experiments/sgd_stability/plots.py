"""Figures: sharpness against the 2/eta thresholds across runs, test error and norms against eta,
and lambda_max over steps for the edge-of-stability runs."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.sgd_stability.claims import NORMS, final, method, setup
from runner.report.style import figure, save

STYLE = {"GD": dict(color="tab:red", marker="^"), "SGD B=1": dict(color="tab:blue", marker="o")}
TITLES = {"dln": "diagonal linear net", "relu": "two-layer ReLU net"}


def _style(m: str) -> dict:
    return STYLE.get(m, dict(color="tab:purple", marker="s"))


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    """Training loss, and lambda_max / tr(H) against 2/eta over the steps of one run."""
    fig, axes = figure(ncols=2, width=4.6, height=3.4)
    loss_col = "evaluate/train_loss" if "evaluate/train_loss" in df else "loss"
    d = df.dropna(subset=[loss_col])
    axes[0, 0].semilogy(d.step, d[loss_col], color="k", lw=1)
    axes[0, 0].set(xlabel="iteration", ylabel=f"{loss_col.split('/')[-1].replace('_', ' ')} (MSE)", title="training loss")
    ax = axes[0, 1]
    c = df.dropna(subset=["sharpness/lambda_max"])
    ax.plot(c.step, c["sharpness/lambda_max"], "o-", ms=3, label=r"$\lambda_{max}$")
    if "sharpness/trace" in c:
        ax.errorbar(c.step, c["sharpness/trace"], yerr=c["sharpness/trace_se"], fmt="s-", ms=3, label="tr(H) ± SE")
    if "sharpness/two_over_lr" in c:
        ax.plot(c.step, c["sharpness/two_over_lr"], "k--", lw=1, label=r"$2/\eta$")
    ax.set_yscale("log")
    ax.set(xlabel="iteration", ylabel="curvature", title="sharpness vs the stability threshold")
    ax.legend()
    fig.suptitle(f"sgd_stability ({cfg.get('scale')}): {setup(cfg)}, {method(cfg)}, lr={cfg['optimizer']['lr']}, "
                 f"seed {cfg.get('seed')}", fontsize=9)
    return save(fig, Path(out_dir) / "curvature.png")


def _table(runs: list) -> pd.DataFrame:
    rows = []
    for r in runs:
        if r.status.get("status") != "completed" or setup(r.cfg) not in NORMS or "sharpness/trace" not in r.metrics:
            continue
        df = r.metrics
        norm = f"evaluate/{NORMS[setup(r.cfg)]}"
        rows.append({"setup": setup(r.cfg), "method": method(r.cfg), "lr": float(r.cfg["optimizer"]["lr"]),
                     "trace": final(df, "sharpness/trace"), "lambda_max": final(df, "sharpness/lambda_max"),
                     "test_loss": final(df, "evaluate/test_loss"), "norm": final(df, norm) if norm in df else np.nan})
    return pd.DataFrame(rows)


def _ticks(ax, values) -> None:
    """Label a log x axis at the values used (no crowded minor labels)."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    vals = sorted(set(float(v) for v in values))
    ax.xaxis.set_major_locator(FixedLocator(vals))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.3g}")
    ax.xaxis.set_minor_formatter(NullFormatter())


def _errorbar(ax, g: pd.DataFrame, x: str, y: str, **kw) -> None:
    s = g.groupby(x)[y].agg(["mean", "std", "count"]).reset_index()
    ax.errorbar(s[x], s["mean"], yerr=s["std"].fillna(0.0), capsize=2, ms=5, **kw)


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    out = []
    t = _table(runs)
    if len(t):
        setups = sorted(t.setup.unique())
        fig, axes = figure(ncols=3, nrows=len(setups), width=4.3, height=3.4)
        for row, name in zip(axes, setups):
            ts = t[t.setup == name]
            ts = ts.assign(two_over_lr=2.0 / ts.lr)
            seeds = int(ts.groupby(["method", "lr"]).size().max())
            for m, g in ts.groupby("method"):
                st = _style(m)
                _errorbar(row[0], g, "two_over_lr", "trace", color=st["color"], marker=st["marker"], ls="none",
                          label=f"{m}: tr(H)")
                _errorbar(row[0], g, "two_over_lr", "lambda_max", color=st["color"], marker=st["marker"], ls="none",
                          mfc="none", label=rf"{m}: $\lambda_{{max}}$")
                _errorbar(row[1], g, "lr", "test_loss", color=st["color"], marker=st["marker"], ls="-", label=m)
                _errorbar(row[2], g, "lr", "norm", color=st["color"], marker=st["marker"], ls="-", label=m)
            lim = np.array([ts.two_over_lr.min() / 1.5, ts.two_over_lr.max() * 1.5])
            row[0].plot(lim, lim, "k--", lw=1, label=r"$y = 2/\eta$")
            row[0].set(xscale="log", yscale="log", xlabel=r"$2/\eta$", ylabel="curvature at the end of training",
                       title=f"{TITLES.get(name, name)}: sharpness vs 2/η")
            row[1].set(xscale="log", yscale="log", xlabel=r"learning rate $\eta$", ylabel="test MSE",
                       title=f"{TITLES.get(name, name)}: test error vs η")
            row[2].set(xscale="log", xlabel=r"learning rate $\eta$",
                       ylabel=NORMS[name].replace("_", " ") + (" of β" if name == "dln" else ""),
                       title=f"norm vs η (mean ± SD, {seeds} seed(s))")
            _ticks(row[0], ts.two_over_lr)
            for ax in row:
                ax.legend(fontsize=7)
            for ax in row[1:]:
                _ticks(ax, ts.lr)
        scale = runs[0].cfg.get("scale")
        fig.suptitle(f"sgd_stability ({scale}): SGD minima obey tr(H) ≤ 2/η, GD minima only λmax ≤ 2/η",
                     fontsize=10)
        out.append(save(fig, Path(out_dir) / "sgd_stability.png"))
    eos = [r for r in runs if setup(r.cfg) == "eos" and "sharpness/lambda_max" in r.metrics]
    if eos:
        out.append(_plot_eos(eos, out_dir))
    return out


def _plot_eos(runs: list, out_dir: Path) -> Path:
    fig, axes = figure(ncols=2, width=5.0, height=3.5)
    by_lr = defaultdict(list)
    for r in runs:
        by_lr[float(r.cfg["optimizer"]["lr"])].append(r)
    colors = dict(zip(sorted(by_lr), ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"] * 4))
    for lr, rs in sorted(by_lr.items()):
        for i, r in enumerate(rs):
            c = r.metrics.dropna(subset=["sharpness/lambda_max"])
            label = rf"$\eta$ = {lr:g}" if i == 0 else None
            axes[0, 0].plot(c.step, c["sharpness/lambda_max"], color=colors[lr], lw=1.2, label=label)
            d = r.metrics.dropna(subset=["loss"])
            axes[0, 1].semilogy(d.step, d.loss, color=colors[lr], lw=0.8, label=label)
        axes[0, 0].axhline(2 / lr, color=colors[lr], ls="--", lw=1)
    axes[0, 0].set(xlabel="iteration", ylabel=r"$\lambda_{max}$ (dashed: $2/\eta$)",
                   title="edge of stability: sharpness rises to 2/η and hovers")
    axes[0, 1].set(xlabel="iteration", ylabel="training loss (MSE, full batch)", title="loss keeps falling, non-monotonically")
    for ax in axes[0]:
        ax.legend()
    fig.suptitle(f"sgd_stability ({runs[0].cfg.get('scale')}): full-batch GD, tanh MLP on digits (Cohen et al. 2021 check)",
                 fontsize=10)
    return save(fig, Path(out_dir) / "edge_of_stability.png")
