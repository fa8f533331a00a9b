"""Figures in the style of the paper's: the average squared distance to x* against activated edges and
against local gradient computations, one curve per method, per graph (log scale on both axes)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.dadao.claims import TARGET
from runner.report.style import figure, save, suptitle

LABELS = {"dadao": "DADAO", "msda": "MSDA", "adom": "ADOM+", "adom_mc": "ADOM+ M.-C.", "continuized": "Continuized"}
COLORS = {"dadao": "tab:red", "msda": "tab:green", "adom": "tab:blue", "adom_mc": "tab:purple",
          "continuized": "tab:orange"}
ORDER = list(LABELS)


def method(cfg: dict) -> str:
    return cfg["algorithm"]["name"]


def _axes(ax, x: str) -> None:
    ax.axhline(TARGET, color="0.5", ls=":", lw=0.8)
    ax.set(xscale="log", yscale="log", ylabel=r"$\frac{1}{n}\sum_i \|x_i - x^*\|^2 / \|x^*\|^2$",
           xlabel="activated edges" if x == "edges" else "local gradients")


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=2, width=4.5, height=3.6)
    m = method(cfg)
    for ax, x in zip(axes[0], ("edges", "grads")):
        ax.plot(df[x], df.dist_rel, color=COLORS.get(m), label=LABELS.get(m, m))
        _axes(ax, x)
        ax.legend(fontsize=7)
    suptitle(fig, "dadao", cfg.get("scale"), f"{LABELS.get(m, m)} on the {cfg['problem']['graph']} "
             f"(n = {cfg['problem']['n']}), seed {cfg.get('seed')}")
    return save(fig, Path(out_dir) / "distance.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.status.get("status") == "completed" and "dist_rel" in r.metrics]
    graphs = sorted({r.cfg["problem"]["graph"] for r in done})
    if not graphs:
        return []
    fig, axes = figure(ncols=2, nrows=len(graphs), width=4.8, height=3.6)
    for row, g in enumerate(graphs):
        for col, x in enumerate(("edges", "grads")):
            ax = axes[row, col]
            for m in ORDER:
                rs = sorted((r for r in done if r.cfg["problem"]["graph"] == g and method(r.cfg) == m),
                            key=lambda r: str(r.cfg.get("seed")))
                for k, r in enumerate(rs):  # every seed, thin; the first labelled
                    df = r.metrics
                    ax.plot(df[x], df.dist_rel, color=COLORS[m], lw=0.9, alpha=0.8,
                            label=f"{LABELS[m]} ({len(rs)} seeds)" if k == 0 else None)
            _axes(ax, x)
            ax.set_title(f"{g}, n = {done[0].cfg['problem']['n']}: vs {'edges' if x == 'edges' else 'gradients'}")
            ax.legend(fontsize=7, loc="lower left")
    suptitle(fig, "dadao", done[0].cfg.get("scale"), "distance to x* vs communications and vs computations")
    return [save(fig, Path(out_dir) / "dadao.png")]
