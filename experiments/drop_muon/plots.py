"""Figures in the style of the Drop-Muon paper: training accuracy against wall-clock (its figures) and
against the training FLOPs, the sampled start layers, and the per-layer update norms."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.drop_muon.claims import TRAIN_ACC, final, norm_cols
from runner.report.style import figure, save

LABEL = {"full": ("Muon", "tab:blue"), "uniform": ("Drop-Muon (uniform s)", "tab:red")}


def sampling(cfg: dict) -> str:
    """The start-layer sampling of a run (full = Muon, uniform = Drop-Muon): the figures' grouping."""
    return cfg.get("trainer", {}).get("sampling", "")


def _title(cfg: dict, what: str) -> str:
    data = cfg.get("dataset", {}).get("name", "data")
    return f"drop_muon ({cfg.get('scale', 'smoke')}, {data}): {what}"


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=2, width=5.0)
    ev = df[df[TRAIN_ACC].notna() & df.train_time_s.notna()]
    label, color = LABEL.get(sampling(cfg), (sampling(cfg), "k"))
    axes[0, 0].plot(ev.train_time_s, ev[TRAIN_ACC], color=color, label=label)
    axes[0, 0].set(xlabel="training wall-clock (s, excl. evaluation)", ylabel="training accuracy (%, fixed subset)",
                   title=_title(cfg, f"{label}, seed {cfg.get('seed')}"))
    for i, c in enumerate(norm_cols(df), start=1):
        rows = df[df[c].notna()]
        axes[0, 1].plot(rows.step, rows[c], lw=0.8, label=f"layer {i}")
    axes[0, 1].set(xlabel="step", ylabel="||update|| of the layer (Frobenius)", title="per-layer update norms")
    axes[0, 1].legend(fontsize=7)
    return save(fig, Path(out_dir) / "accuracy.png")


def _curves(rs: list, x: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training accuracy on a common grid of x (interpolated per seed), mean and SD."""
    evs = [r.metrics[r.metrics[TRAIN_ACC].notna() & r.metrics[x].notna()] for r in rs]
    grid = np.geomspace(max(min(e[x].min() for e in evs), 1e-3), min(e[x].max() for e in evs), 200)
    ys = np.stack([np.interp(grid, e[x], e[TRAIN_ACC]) for e in evs])
    return grid, ys.mean(0), ys.std(0)


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    groups: dict[str, list] = defaultdict(list)
    for r in runs:
        if r.status.get("status") == "completed" and TRAIN_ACC in r.metrics and sampling(r.cfg) in LABEL:
            groups[sampling(r.cfg)].append(r)
    if not groups:
        return []
    cfg0 = next(iter(groups.values()))[0].cfg
    fig, axes = figure(ncols=2, nrows=2, width=5.6, height=3.8)
    target = np.mean([final(r.metrics, TRAIN_ACC) for r in groups.get("full", [])]) if "full" in groups else None
    for ax, x, xlabel in ((axes[0, 0], "train_time_s", "training wall-clock (s, excl. evaluation)"),
                          (axes[0, 1], "train_flops", "training FLOPs (forward + backward + Newton-Schulz)")):
        for key, rs in sorted(groups.items()):
            label, color = LABEL[key]
            grid, mean, sd = _curves(rs, x)
            ax.plot(grid, mean, color=color, label=f"{label} (n={len(rs)})")
            ax.fill_between(grid, mean - sd, mean + sd, color=color, alpha=0.2, lw=0)
        if target:
            ax.axhline(target, color="0.3", ls=":", lw=1, label=f"Muon's final training accuracy ({target:.1f} %)")
        ax.set(xscale="log", xlabel=xlabel, ylabel="training accuracy (%, fixed subset)",
               ylim=(max(0, (target or 50) - 40), 100.5),
               title=_title(cfg0, "training accuracy vs " + ("wall-clock" if x == "train_time_s" else "FLOPs")))
        ax.legend(loc="lower right", fontsize=7)
    # sampled start layers of Drop-Muon (all seeds pooled)
    ax = axes[1, 0]
    for key, rs in sorted(groups.items()):
        s = pd.concat([r.metrics.start_layer.dropna() for r in rs]).astype(int)
        counts = s.value_counts(normalize=True).sort_index()
        width = 0.4
        ax.bar(counts.index + (width / 2 if key == "uniform" else -width / 2), counts.values, width,
               color=LABEL[key][1], label=LABEL[key][0])
    ax.set(xlabel="start layer s (layers s..b are updated)", ylabel="fraction of steps",
           title=_title(cfg0, "sampled start layers (logged rows)"))
    ax.legend(fontsize=7)
    # per-layer update norms, mean over steps and seeds (Drop-Muon: over the steps that updated the layer)
    ax = axes[1, 1]
    for j, (key, rs) in enumerate(sorted(groups.items())):
        cols = norm_cols(rs[0].metrics)
        means = []
        for i, c in enumerate(cols, start=1):
            vals = pd.concat([r.metrics.loc[r.metrics[c].notna() & (r.metrics.start_layer <= i), c] for r in rs])
            means.append(vals.mean())
        ax.bar(np.arange(1, len(cols) + 1) + (0.2 if j else -0.2), means, 0.4, color=LABEL[key][1], label=LABEL[key][0])
    ax.set(xlabel="layer (1 = input side)", ylabel="mean ||update|| when updated",
           title=_title(cfg0, "per-layer update norms"))
    ax.legend(fontsize=7)
    return [save(fig, Path(out_dir) / "drop_muon.png")]
