"""Figures in the style of the paper's Fig. 3–5: error maps over (x, t) (reference, prediction, |error|) per
variant, held-out relL2 against the step (median and range over seeds), and the step-time split into the
network's forward pass, the LM solves and the backward pass (implicit step, loss, backprop, Adam)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.arrays import read_array
from runner.report.style import figure, save, suptitle

LABELS = {"sc": "PI-SC", "hc": "PI-HC", "moe": "PI-HC-MoE"}
TIMES = (("t_forward", "forward"), ("t_lm", "LM"), ("t_backward", "backward"))


def _maps(run_dir: Path):
    try:
        return read_array(run_dir, "map/pred")[1][-1], read_array(run_dir, "map/ref")[1][-1]
    except Exception:  # a run without maps (stopped early): no panel
        return None


def _map_panels(axes, pred, ref, label: str) -> None:
    extent = (0, 1, 500, 0)
    for ax, field, title in zip(axes, (ref, pred, np.abs(pred - ref)),
                                ("reference (BDF)", f"{label} prediction", "|error|"), strict=True):
        im = ax.imshow(field, aspect="auto", extent=extent, cmap="viridis" if title != "|error|" else "magma")
        ax.set(xlabel="x", ylabel="t (s)", title=title)
        ax.figure.colorbar(im, ax=ax, fraction=0.046)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    variant = cfg["trainer"]["variant"]
    fig, axes = figure(ncols=5, width=3.4, height=3.0)
    maps = _maps(Path(df.attrs.get("run_dir", out_dir)))
    if maps is not None:
        _map_panels(axes[0, :3], maps[0], maps[1], LABELS[variant])
    ev = df.dropna(subset=["test_rel_l2"])
    axes[0, 3].semilogy(ev.step, 100 * ev.test_rel_l2, marker=".")
    axes[0, 3].set(xlabel="step", ylabel="test relL2 (%)")
    means = [float(df[c].iloc[1:].mean()) if c in df else 0.0 for c, _ in TIMES]
    axes[0, 4].bar([n for _, n in TIMES], [1e3 * m for m in means])
    axes[0, 4].set(ylabel="ms per step (mean, after step 1)")
    suptitle(fig, "pinn_moe", cfg.get("scale"), f"{LABELS[variant]} seed {cfg.get('seed')}")
    return save(fig, Path(out_dir) / "training.png")


def _by_variant(runs: list) -> dict:
    out: dict = {}
    for r in runs:
        if "test_rel_l2" in r.metrics and r.metrics.test_rel_l2.notna().any():
            out.setdefault(r.cfg["trainer"]["variant"], []).append(r)
    return {v: sorted(out[v], key=lambda r: str(r.seed)) for v in LABELS if v in out}


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    groups = _by_variant(runs)
    if not groups:
        return []
    paths = []
    fig, axes = figure(ncols=2, width=4.6, height=3.4)
    for v, rs in groups.items():
        curves = pd.concat([r.metrics.dropna(subset=["test_rel_l2"]).set_index("step").test_rel_l2 for r in rs], axis=1)
        line, = axes[0, 0].semilogy(curves.index, 100 * curves.median(axis=1), label=f"{LABELS[v]} (median, {len(rs)} seeds)")
        axes[0, 0].fill_between(curves.index, 100 * curves.min(axis=1), 100 * curves.max(axis=1), alpha=0.2,
                                color=line.get_color())
    axes[0, 0].set(xlabel="step", ylabel="held-out relL2 (%)")
    axes[0, 0].legend(fontsize=7)
    bottom = np.zeros(len(groups))
    for col, name in TIMES:
        ms = np.array([np.median([r.metrics[col].iloc[1:].mean() if col in r.metrics else 0.0 for r in rs])
                       for rs in groups.values()]) * 1e3
        ms = np.nan_to_num(ms)
        axes[0, 1].bar([LABELS[v] for v in groups], ms, bottom=bottom, label=name)
        bottom += ms
    axes[0, 1].set(ylabel="ms per step (median over seeds)", title="step time split (CPU, 1 thread)")
    axes[0, 1].legend(fontsize=7)
    suptitle(fig, "pinn_moe", runs[0].scale, "held-out error and step time")
    paths.append(save(fig, Path(out_dir) / "pinn_moe_error_time.png"))
    fig, axes = figure(ncols=3, nrows=len(groups), width=3.6, height=2.8)
    for i, (v, rs) in enumerate(groups.items()):
        maps = _maps(rs[0].path)
        if maps is not None:
            _map_panels(axes[i], maps[0], maps[1], f"{LABELS[v]} (seed {rs[0].seed})")
    suptitle(fig, "pinn_moe", runs[0].scale, "error maps on held-out IC 0")
    paths.append(save(fig, Path(out_dir) / "pinn_moe_error_maps.png"))
    return paths
