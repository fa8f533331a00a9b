"""Interactive curves for the results site: a paper's key metrics per arm, mean ± SD over seeds.

The key metrics of an experiment are, in order: `SITE_METRICS` (a list of metric columns) if its
`claims.py` or `plots.py` declares one; else the metric columns its headline claims read, then those
its other claims read (found by measuring one run per claim on a frame that records the columns
asked for); else `loss` and the main metric of the generic figure. At most `MAX_METRICS` are drawn.
One figure per (study, metric); one line per setting (the arms, and any grid inside a study), mean ±
SD over its completed seeds as a band (geometric mean ×/÷ SD on a log axis when the values span two
decades), every diverged seed dashed with × at its divergence step.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from runner.report.figures import main_metric
from runner.report.table import LEAD, curve_stats, group_by_setting, spans_decades

MAX_METRICS = 6
MAX_POINTS = 1500  # per line; longer curves are thinned evenly (the first and last step kept)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
ARM_COLORS = {"er": "#1f77b4", "finetune": "#d62728", "joint": "#2ca02c"}  # as runner.report.style.COLORS


class _Recording(pd.DataFrame):
    """A metrics frame that notes every column read from it (and from frames derived from it)."""

    _metadata = ["_seen"]

    @property
    def _constructor(self):
        return _Recording

    def _note(self, key) -> None:
        seen = self.__dict__.get("_seen")
        if seen is None:
            return
        for k in key if isinstance(key, (list, tuple)) else [key]:
            if isinstance(k, str) and k in self.columns:
                seen[k] = None

    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)

    def __getattr__(self, name):
        if not name.startswith("_"):
            self._note(name)
        return super().__getattr__(name)


def columns_read(claim, run) -> list[str]:
    """The metric columns `claim.measure` reads on `run` (empty if it raises before reading any)."""
    frame = _Recording(run.metrics)
    frame._seen = {}
    try:
        claim.measure(frame, run.cfg)
    except Exception:  # noqa: BLE001,S110 -- a claim that cannot be measured still named what it read
        pass
    return [c for c in frame._seen if c not in LEAD]


def _numeric(runs: list, col: str) -> bool:
    return any(col in r.metrics and pd.api.types.is_numeric_dtype(r.metrics[col]) for r in runs)


def key_metrics(module_claims, module_plots, runs: list) -> list[str]:
    """The metric columns to draw for these runs (see the module docstring)."""
    if not runs:
        return []
    for mod in (module_claims, module_plots):
        declared = getattr(mod, "SITE_METRICS", None) if mod is not None else None
        if declared:
            return [c for c in declared if _numeric(runs, c)][:MAX_METRICS]
    found: dict[str, None] = {}
    claims = list(getattr(module_claims, "CLAIMS", []) or []) if module_claims is not None else []
    for kind in ("headline", "supporting", "check"):
        for c in [c for c in claims if c.kind == kind]:
            run = next((r for r in runs if r.completed and _applies(c, r.cfg)), None)
            if run is not None:
                found.update(dict.fromkeys(columns_read(c, run)))
    keys = [c for c in found if _numeric(runs, c)]
    if not keys:
        keys = [m for m in ("loss", main_metric(runs)) if m and _numeric(runs, m)]
    return keys[:MAX_METRICS]


def _applies(claim, cfg: dict) -> bool:
    try:
        return bool(claim.relevant(cfg))
    except Exception:  # noqa: BLE001
        return False


def _thin(n: int) -> np.ndarray:
    return np.arange(n) if n <= MAX_POINTS else np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(int))


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _finite(vals) -> list:
    return [None if v is None or not math.isfinite(float(v)) else float(v) for v in vals]


def color_of(label: str, runs: list, index: int) -> str:
    arms = {r.arm for r in runs}
    arm = next(iter(arms)) if len(arms) == 1 else None
    return ARM_COLORS.get(arm, PALETTE[index % len(PALETTE)])


def metric_figure(runs: list, metric: str, title: str):
    """A plotly figure of `metric` per step: one mean ± SD band per setting, diverged seeds marked."""
    import plotly.graph_objects as go

    fig = go.Figure()
    log = spans_decades([r for r in runs if r.completed], metric)
    for i, (label, rs) in enumerate(group_by_setting([r for r in runs if metric in r.metrics]).items()):
        color = color_of(label, rs, i)
        done = [r for r in rs if r.completed]
        stats = curve_stats(done, metric, log=log)
        if not stats.empty:
            stats = stats.iloc[_thin(len(stats))]
            x = stats.index.tolist()
            if stats["sd"].notna().any():
                fig.add_trace(go.Scatter(x=x, y=_finite(stats["hi"]), mode="lines", line=dict(width=0),
                                         legendgroup=label, showlegend=False, hoverinfo="skip"))
                fig.add_trace(go.Scatter(x=x, y=_finite(stats["lo"]), mode="lines", line=dict(width=0),
                                         fill="tonexty", fillcolor=_rgba(color, 0.18), legendgroup=label,
                                         showlegend=False, hoverinfo="skip"))
            fig.add_trace(go.Scatter(
                x=x, y=_finite(stats["mean"]), mode="lines", line=dict(color=color, width=1.8),
                name=f"{label} (n={len(done)})", legendgroup=label,
                customdata=np.c_[_finite(stats["sd"]), stats["n"]].tolist(),
                hovertemplate=f"{label}<br>step %{{x}}<br>{'geo. mean' if log else 'mean'} %{{y:.4g}}"
                              f"<br>{'geo. SD (log10)' if log else 'SD'} %{{customdata[0]:.3g}} (n=%{{customdata[1]}})"
                              "<extra></extra>"))
        for j, r in enumerate([r for r in rs if r.diverged]):
            df = r.metrics[["step", metric]].replace([np.inf, -np.inf], np.nan).dropna()
            df = df.iloc[_thin(len(df))]
            fig.add_trace(go.Scatter(x=df["step"].tolist(), y=df[metric].tolist(), mode="lines",
                                     line=dict(color=color, width=1, dash="dash"), opacity=0.8, legendgroup=label,
                                     name=f"{label}: diverged", showlegend=j == 0,
                                     hovertemplate=f"{r.name} (diverged)<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>"))
            at = r.diverged_at
            if at is not None:
                upto = df[df["step"] <= at][metric]
                fig.add_trace(go.Scatter(
                    x=[at], y=[float(upto.iloc[-1]) if len(upto) else None], mode="markers",
                    marker=dict(symbol="x", size=11, color=color, line=dict(width=1)), legendgroup=label,
                    showlegend=False, hovertemplate=f"{r.name}<br>diverged at step {at}<extra></extra>"))
                if not len(upto):
                    fig.add_vline(x=at, line=dict(color=color, dash="dot", width=1))
    axis = dict(showgrid=True, gridcolor="#eceef2", zeroline=False, showline=True, linecolor="#98a2b3", ticks="outside",
                tickcolor="#98a2b3", automargin=True)
    fig.update_layout(  # styled here rather than by a plotly template: templates cost ~0.2 s a figure
        template="none", title=dict(text=title, font=dict(size=14), x=0.01, xanchor="left"), height=360,
        margin=dict(l=60, r=20, t=46, b=44), hovermode="closest", paper_bgcolor="white", plot_bgcolor="white",
        font=dict(family="-apple-system, Segoe UI, Roboto, Arial, sans-serif", size=12, color="#1d2330"),
        legend=dict(font=dict(size=11), orientation="h", yanchor="top", y=-0.18, x=0),
        xaxis=dict(axis, title=dict(text="step (iterations)", standoff=4)),
        yaxis=dict(axis, title=dict(text=metric + (" (log scale)" if log else "")), type="log" if log else "linear"))
    return fig


def study_groups(runs: list) -> dict[str, list]:
    """{study name (or 'ad hoc runs'): its runs}, studies in name order, ad hoc runs last."""
    groups: dict[str, list] = {}
    for r in runs:
        groups.setdefault(r.study or "", []).append(r)
    return {(k or "ad hoc runs"): groups[k] for k in sorted(groups, key=lambda s: (s == "", s))}


def figure_html(fig, div_id: str) -> str:
    """The figure as a <div> and the script that draws it; plotly.js itself is loaded once per page."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True,
                               "modeBarButtonsToRemove": ["select2d", "lasso2d"]})
