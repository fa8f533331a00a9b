"""Shared figure style and helpers, so every paper's figures read the same way.

`figure`/`save` fix sizes, fonts and atomic saving; `title`/`suptitle` put the paper's short name and
the scale in the title; `mean_sd_band` draws mean ± SD over seeds; `mark_diverged` draws a diverged run
thin and dashed with a × at its divergence step; `plot_setting` does both for one setting's runs;
`log_axes` switches to log scale (or decides from the data with 'auto').
"""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from runner.report.papers import short_name  # noqa: E402
from runner.report.table import curve_stats  # noqa: E402


def share_mathtext_parses() -> None:
    """One cache of parsed math text for the whole process, not one per renderer.

    Log axes label their ticks in math text ($10^{-5}$). matplotlib caches a parse per
    `MathTextParser`, and every renderer makes its own parser, so each tick label was parsed anew by
    pyparsing for every figure and twice per figure (tight_layout's renderer, then savefig's): 28 % of
    the time to draw dadao's per-run figure. The parse depends only on the output type and the cached
    call's arguments (the text, dpi, a copy of the font properties, antialiasing, hinting), and
    renderers only read it, so the same result is shared (the PNGs are byte-identical; a test checks).
    Idempotent; a matplotlib without this per-parser cache is left as it is."""
    from matplotlib.mathtext import MathTextParser

    parse = getattr(getattr(MathTextParser, "_parse_cached", None), "__wrapped__", None)
    if getattr(MathTextParser, "_optrun_shared", False) or parse is None:
        return
    parsers = {}

    @functools.lru_cache(maxsize=1024)
    def shared(output_type, *args):  # args: the cached call's (s, dpi, prop, antialiased, ...)
        return parse(parsers[output_type], *args)

    def parse_cached(self, *args):
        parsers.setdefault(self._output_type, self)
        return shared(self._output_type, *args)

    MathTextParser._parse_cached = parse_cached
    MathTextParser._optrun_shared = True


share_mathtext_parses()

COLORS = {"er": "tab:blue", "finetune": "tab:red", "joint": "tab:green"}
RC = {"figure.dpi": 110, "savefig.dpi": 130, "axes.spines.top": False, "axes.spines.right": False,
      "axes.grid": True, "grid.alpha": 0.25, "font.size": 9, "legend.fontsize": 8, "legend.frameon": False}
DIVERGED_MARKER = dict(marker="x", s=46, linewidths=1.8, zorder=6)


def figure(ncols: int = 1, nrows: int = 1, width: float = 6.0, height: float = 3.6):
    with plt.rc_context(RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes


MINOR_TICK_DECADES = 4  # a log axis spanning more decades drops its minor ticks


def thin_log_minor_ticks(fig) -> None:
    """No minor ticks on log axes spanning more than MINOR_TICK_DECADES decades.

    Eight unlabelled ticks per decade over 10+ decades are clutter, and matplotlib builds every tick as
    artists: on dadao's per-run figure (12 decades) they were ~35 % of the time to save it.
    """
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() != "log":
                continue
            lo, hi = sorted(axis.get_view_interval())
            if lo > 0 and np.isfinite(hi) and np.log10(hi / lo) > MINOR_TICK_DECADES:
                axis.set_minor_locator(matplotlib.ticker.NullLocator())


def save(fig, path: Path) -> Path:
    path = Path(path)
    thin_log_minor_ticks(fig)
    with plt.rc_context(RC):
        fig.tight_layout()
        tmp = path.with_name(f".{path.stem}.tmp.png")
        fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def color_for(key: str, index: int = 0) -> str:
    """A fixed colour for known keys (COLORS), else the index-th colour of the default cycle."""
    if key in COLORS:
        return COLORS[key]
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return cycle[index % len(cycle)]


def paper_title(experiment_id: str, scale: str | None, what: str = "") -> str:
    """'Ghosts of Softmax (smoke): test accuracy per step'."""
    head = f"{short_name(experiment_id)} ({scale or 'smoke'})"
    return f"{head}: {what}" if what else head


def title(ax, experiment_id: str, scale: str | None, what: str = "") -> None:
    ax.set_title(paper_title(experiment_id, scale, what))


def suptitle(fig, experiment_id: str, scale: str | None, what: str = "") -> None:
    """The same title over a multi-panel figure (panels then carry only what they show)."""
    fig.suptitle(paper_title(experiment_id, scale, what), fontsize=10)


def _positive_span(ax, axis: str) -> float:
    """Decades spanned by the positive finite data of the axis' lines (0 if any value is <= 0)."""
    vals = [np.asarray(ln.get_xdata() if axis == "x" else ln.get_ydata(), dtype=float) for ln in ax.lines]
    vals = np.concatenate(vals) if vals else np.array([])
    vals = vals[np.isfinite(vals)]
    if not vals.size or (vals <= 0).any():
        return 0.0
    return float(np.log10(vals.max() / vals.min()))


def log_axes(ax, x: bool | str = False, y: bool | str = True, decades: float = 2.0) -> None:
    """Log scale on the chosen axes; 'auto' uses it when the plotted data are positive and span >= `decades`."""
    for axis, want in (("x", x), ("y", y)):
        if want == "auto":
            want = _positive_span(ax, axis) >= decades
        if want:
            (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def band(ax, x, mean, lo, hi, color=None, label: str | None = None, alpha: float = 0.2, **line_kw):
    """A mean line with a shaded band from lo to hi (none where undefined, e.g. a single seed)."""
    x, mean, lo, hi = (np.asarray(v, dtype=float) for v in (x, mean, lo, hi))
    (line,) = ax.plot(x, mean, color=color, label=label, lw=line_kw.pop("lw", 1.3), **line_kw)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.fill_between(x, np.where(ok, lo, np.nan), np.where(ok, hi, np.nan), color=line.get_color(), alpha=alpha,
                        lw=0)
    return line


def mean_sd_band(ax, runs: list, metric: str, x: str = "step", label: str | None = None, color=None,
                 log: bool = False, **line_kw):
    """Mean ± SD of `metric` over the completed runs given (seeds of one setting); None if none logged it.

    With `log=True` (for a log axis) the line is the geometric mean and the band ×/÷ the geometric SD.
    """
    done = [r for r in runs if r.status.get("status") == "completed"]
    stats = curve_stats(done, metric, x, log=log)
    if stats.empty:
        return None
    if label is not None:
        label = f"{label} (n={len(done)})"
    return band(ax, stats.index, stats["mean"], stats["lo"], stats["hi"], color=color, label=label, **line_kw)


def mark_diverged(ax, run, metric: str, x: str = "step", color=None, label: str | None = None):
    """A diverged run: its curve thin and dashed, and × at the divergence step (at the top if no value)."""
    df = run.metrics.replace([np.inf, -np.inf], np.nan)
    if x not in df or metric not in df:
        return None
    ok = df.dropna(subset=[x, metric])
    if len(ok):
        ax.plot(ok[x], ok[metric], color=color, lw=0.8, ls="--", alpha=0.8)
    at = run.diverged_at
    if at is None:
        return None
    upto = df[df["step"] <= at] if "step" in df else df
    x_at = upto[x].dropna().iloc[-1] if x != "step" and upto[x].notna().any() else at
    y_vals = upto[metric].dropna()
    if len(y_vals):
        return ax.scatter([x_at], [y_vals.iloc[-1]], color=color, label=label, **DIVERGED_MARKER)
    return ax.scatter([x_at], [0.97], color=color, label=label, transform=ax.get_xaxis_transform(),
                      **DIVERGED_MARKER)


def plot_setting(ax, runs: list, metric: str, label: str, color=None, x: str = "step", log: bool = False):
    """One setting: mean ± SD over its completed seeds (geometric if `log`), every diverged seed marked ×."""
    line = mean_sd_band(ax, runs, metric, x=x, label=label, color=color, log=log)
    color = line.get_color() if line is not None else color
    diverged = [r for r in runs if r.status.get("status") == "diverged"]
    for i, r in enumerate(diverged):
        mark_diverged(ax, r, metric, x=x, color=color,
                      label=f"{label}: diverged ({len(diverged)})" if i == 0 else None)
    return line
