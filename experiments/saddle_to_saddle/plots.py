"""Figures in the style of the paper's Fig. 1: loss staircases with the complexity counter beside them,
and the ln(1/epsilon) scaling of the time to learn each mode."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.saddle_to_saddle.claims import complexity, complexity_column, plateaus, rank_times
from runner.report.style import figure, save


def family(cfg: dict) -> str:
    m = cfg["model"]
    if m["_target_"].endswith("LinearConv"):
        return "linear conv"
    return f"{m.get('activation', 'linear')} fully connected"


def _title(cfg: dict, what: str) -> str:
    return f"saddle_to_saddle ({cfg.get('scale')}): {what}"


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    """Loss with detected plateaus shaded and the complexity counter; singular values or unit norms."""
    fig, axes = figure(ncols=2, width=5.2, height=3.6)
    ax, ax2 = axes[0]
    d = df[np.isfinite(df["loss"])]
    col = complexity_column(df)
    name = col.split("/")[-1]
    ax.semilogy(d.step, d.loss, color="k", lw=1.2, label="training loss")
    for i, p in enumerate(plateaus(df)):
        ax.axvspan(p["start"], p["end"], color="tab:orange", alpha=0.2, lw=0, label="plateau" if i == 0 else None)
    twin = ax.twinx()
    c = df[df[col].notna()]
    twin.step(c.step, c[col], where="post", color="tab:blue", lw=1.2, label=name)
    twin.set_ylabel(f"{name} (blue)")
    ax.set(xlabel="GD step", ylabel="training loss (MSE)",
           title=_title(cfg, f"{family(cfg)}, eps={cfg['model']['init_scale']:g}, seed {cfg.get('seed')}"))
    ax.legend(loc="lower left")
    sv, units = complexity("sv"), complexity("unit_norm")
    series = [c for c in df.columns if c.startswith(sv)] or [c for c in df.columns if c.startswith(units)]
    for s in series:
        ax2.semilogy(c.step, c[s].clip(lower=1e-12), lw=1, label=s.split("/")[-1])
    ax2.set(xlabel="GD step", ylabel="singular value of W2W1" if series and series[0].startswith(sv) else
            "|a_h| |w_h| (largest units)", title="what is learned, one unit at a time")
    ax2.legend(loc="lower right", ncol=2, fontsize=7)
    return save(fig, Path(out_dir) / "dynamics.png")


def _geo_band(curves: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Geometric mean and +-1 SD band in log space over seeds (the loss spans many decades)."""
    logs = np.log10(curves.clip(lower=1e-30))
    mean, sd = logs.mean(axis=1), logs.std(axis=1).fillna(0.0)
    return 10 ** mean, 10 ** (mean - sd), 10 ** (mean + sd)


def _staircases(runs: list, out_dir: Path) -> Path:
    groups: dict = defaultdict(lambda: defaultdict(list))
    for r in runs:
        groups[family(r.cfg)][float(r.cfg["model"]["init_scale"])].append(r)
    fams = sorted(groups)
    fig, axes = figure(ncols=len(fams), nrows=2, width=4.6, height=3.0)
    for j, fam in enumerate(fams):
        cmap = {e: f"C{i}" for i, e in enumerate(sorted(groups[fam], reverse=True))}
        for eps, rs in sorted(groups[fam].items(), reverse=True):
            loss = pd.concat([r.metrics.set_index("step")["loss"].dropna() for r in rs], axis=1)
            mean, lo, hi = _geo_band(loss)
            axes[0, j].semilogy(mean.index, mean, color=cmap[eps], lw=1.2, label=f"eps={eps:g} (n={len(rs)})")
            axes[0, j].fill_between(mean.index, lo, hi, color=cmap[eps], alpha=0.2, lw=0)
            col = complexity_column(rs[0].metrics)
            comp = pd.concat([r.metrics.set_index("step")[col].dropna() for r in rs], axis=1)
            axes[1, j].step(comp.index, comp.mean(axis=1), where="post", color=cmap[eps], lw=1.2)
            axes[1, j].set_ylabel(f"{col.split('/')[-1]} (mean over seeds)")
        scale = next(iter(groups[fam].values()))[0].cfg.get("scale")
        axes[0, j].set(xlabel="GD step", ylabel="training loss (MSE)", title=f"saddle_to_saddle ({scale}): {fam}")
        axes[0, j].legend(loc="lower left", fontsize=7)
        axes[1, j].set(xlabel="GD step", title="complexity learned so far")
    return save(fig, Path(out_dir) / "saddle_to_saddle.png")


def _scaling(runs: list, out_dir: Path) -> Path | None:
    pts = defaultdict(list)  # k -> [(ln 1/eps, t_k)]
    for r in runs:
        eps = float(r.cfg["model"]["init_scale"])
        if family(r.cfg) == "linear fully connected" and eps < 1:
            for k, t in enumerate(rank_times(r.metrics), start=1):
                pts[k].append((np.log(1 / eps), t))
    if not pts:
        return None
    fig, axes = figure(width=6.4, height=4.0)
    ax = axes[0, 0]
    for k, xy in sorted(pts.items()):
        x, t = np.array(xy).T
        ax.scatter(x, t, color=f"C{k - 1}", s=18, label=f"rank {k}")
        slope = np.sum(x * t) / np.sum(x * x)  # t = c ln(1/eps), through the origin
        xs = np.linspace(0, x.max() * 1.05, 20)
        ax.plot(xs, slope * xs, color=f"C{k - 1}", lw=0.8, ls="--")
    scale = runs[0].cfg.get("scale")
    ax.set(xlabel="ln(1/eps)", ylabel="first GD step with rank >= k",
           title=f"saddle_to_saddle ({scale}), linear net: time to rank k vs ln(1/eps)\n"
                 "dashed: t = c_k ln(1/eps) (theory: c_k ~ 1/s_k)")
    ax.legend(loc="upper left")
    return save(fig, Path(out_dir) / "epsilon_scaling.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.status.get("status") == "completed" and "loss" in r.metrics]
    if not done:
        return []
    return [p for p in (_staircases(done, out_dir), _scaling(done, out_dir)) if p is not None]
