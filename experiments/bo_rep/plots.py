"""Figures in the style of the paper's experiments: the measure of progress against oracle calls.

Smoke (the toy): ||grad Phi(x)|| (log) against oracle calls (grad_f + grad_g + HVP + cross products),
one panel per step size eta, the three methods coloured, every seed a line, a diverged run dashed
up to its last finite value and marked × (divergence is data). Paper scale (hyper-cleaning): test
accuracy and the AUC of the learned weights against oracle calls (the paper shows test accuracy
during training; its figures could not be read here).
"""
from __future__ import annotations

from pathlib import Path

from experiments.bo_rep.claims import CLEANING, TOY, eta, method
from runner.report.style import figure, mark_diverged, save, suptitle

STYLE = {"bo_rep": dict(color="tab:red", label="BO-REP"), "soba": dict(color="tab:blue", label="SOBA"),
         "ma_soba": dict(color="tab:green", label="MA-SOBA")}
X = "oracle_calls"


def _draw(ax, runs: list, metric: str, log: bool) -> None:
    seen = set()
    for r in sorted(runs, key=lambda r: list(STYLE).index(method(r.cfg)) if method(r.cfg) in STYLE else 9):
        st = STYLE.get(method(r.cfg), dict(color="0.4", label=method(r.cfg)))
        label = st["label"] if st["label"] not in seen else None
        seen.add(st["label"])
        if r.diverged:
            mark_diverged(ax, r, metric, x=X, color=st["color"], label=f"{st['label']} diverged (×)" if label else None)
            continue
        df = r.metrics.dropna(subset=[X, metric])
        ax.plot(df[X], df[metric], color=st["color"], lw=1.0, alpha=0.85, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("oracle calls (grad f, grad g, HVP, cross; log)")


def plot_toy(runs: list, out_dir: Path) -> Path | None:
    runs = [r for r in runs if r.is_in(TOY) and X in r.metrics]
    if not runs:
        return None
    etas = sorted({eta(r.cfg) for r in runs})
    fig, axes = figure(ncols=len(etas), width=3.6, height=3.3)
    for ax, e in zip(axes[0], etas):
        _draw(ax, [r for r in runs if eta(r.cfg) == e], "grad_phi_norm", log=True)
        ax.axhline(0.2, color="0.5", ls=":", lw=0.8)
        ax.set_title(f"η = {e:g}")
    axes[0, 0].set_ylabel(r"$\|\nabla\Phi(x_t)\|$")
    axes[0, 0].legend(loc="lower left", fontsize=7)
    axes[0, -1].legend(loc="upper right", fontsize=7)
    suptitle(fig, "bo_rep", runs[0].scale, "quartic toy, σ = 0.1, 3 seeds")
    return save(fig, Path(out_dir) / "toy_grad_phi.png")


def plot_cleaning(runs: list, out_dir: Path) -> Path | None:
    runs = [r for r in runs if r.is_in(CLEANING) and X in r.metrics and "test_acc" in r.metrics]
    if not runs:
        return None
    fig, axes = figure(ncols=2, width=4.2, height=3.3)
    _draw(axes[0, 0], runs, "test_acc", log=False)
    _draw(axes[0, 1], runs, "weight_auc", log=False)
    axes[0, 0].set_ylabel("test accuracy (%)")
    axes[0, 1].set_ylabel(r"AUC of $\sigma(\lambda)$, clean vs flipped")
    axes[0, 0].legend(loc="lower right", fontsize=7)
    suptitle(fig, "bo_rep", runs[0].scale, "data hyper-cleaning, 30 % label noise")
    return save(fig, Path(out_dir) / "cleaning.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    return [p for p in (plot_toy(runs, out_dir), plot_cleaning(runs, out_dir)) if p is not None]
