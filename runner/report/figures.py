"""The generic figure for experiments without a `plot_report`: loss and the main metric per step.

One line per setting (mean ± SD over its completed seeds), diverged seeds dashed with × at the
divergence step. The main metric is the first of `PREFERRED` that the runs log, else the metric
logged at the most steps (a hook's metric counts by its name after the `<hook>/` namespace).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.report.style import color_for, figure, log_axes, plot_setting, save, suptitle
from runner.report.table import LEAD, group_by_setting, spans_decades

PREFERRED = ("acc", "test_acc", "val_acc", "accuracy", "train_acc", "test_loss", "val_loss", "error", "gap",
             "objective", "grad_norm")
MAX_LEGEND = 12


def _metric_columns(runs: list) -> dict[str, int]:
    """Numeric metric columns -> number of finite values logged across runs."""
    counts: dict[str, int] = {}
    for r in runs:
        for c in r.metrics.columns:
            if c in LEAD or c == "loss" or not pd.api.types.is_numeric_dtype(r.metrics[c]):
                continue
            counts[c] = counts.get(c, 0) + int(np.isfinite(r.metrics[c].to_numpy(dtype=float)).sum())
    return {c: n for c, n in counts.items() if n}


def main_metric(runs: list) -> str | None:
    """The first of PREFERRED among the logged columns, by name or by the name after a hook's
    namespace (`test_eval/test_acc` counts as `test_acc`)."""
    counts = _metric_columns(runs)
    for m in PREFERRED:
        for c in counts:
            if c == m or c.rsplit("/", 1)[-1] == m:
                return c
    return max(counts, key=counts.get) if counts else None


def fallback_figure(experiment_id: str, runs: list):
    """(figure, axes) with loss and the main metric per step for every setting; None if nothing to draw."""
    has_loss = any("loss" in r.metrics for r in runs)
    metrics = [m for m in ("loss" if has_loss else None, main_metric(runs)) if m]
    if not metrics:
        return None
    groups = group_by_setting(runs)
    scales = sorted({r.scale for r in runs})
    fig, axes = figure(ncols=len(metrics), width=5.6, height=3.8)
    for ax, metric in zip(axes[0], metrics):
        log = spans_decades([r for r in runs if r.completed], metric)
        for i, (label, rs) in enumerate(groups.items()):
            plot_setting(ax, rs, metric, label, color=color_for(label, i), log=log)
        ax.set(xlabel="step (iterations)", ylabel=metric + (" (log scale)" if log else ""),
               title=f"{metric}: {'geometric mean ×/÷ SD' if log else 'mean ± SD'} over seeds")
        log_axes(ax, y=log)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        axes[0, 0].legend(handles[:MAX_LEGEND], labels[:MAX_LEGEND], fontsize=7)
    suptitle(fig, experiment_id, "/".join(scales), "per step, one line per setting, × = diverged run")
    return fig, axes


def plot_fallback(experiment_id: str, runs: list, out_dir: Path) -> list[Path]:
    made = fallback_figure(experiment_id, runs)
    if made is None:
        return []
    return [save(made[0], Path(out_dir) / f"{experiment_id}_overview.png")]
