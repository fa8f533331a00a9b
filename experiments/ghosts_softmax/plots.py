"""Figures for Ghosts of Softmax: the LR spike (test accuracy per arm, r per step), the r-sweep (loss
ratio and accuracy kept vs r per architecture), the random-direction test (Figure 8's loss-ratio panels),
the MLP+LN phase-transition onsets and the temperature test (onset thresholds vs T).

A per-run figure is drawn for a run outside the declared studies only (`optrun experiment=... ` by hand):
a reproduction's runs are all drawn in the report's figures, and drawing ~80 per-run figures took more
than a third of the smoke scale's two minutes."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.ghosts_softmax.claims import (
    ARCHITECTURES,
    FAIL_RATIO,
    FIG8,
    NEAR_ONE,
    R_RAW,
    SWEEP,
    TEST_ACC,
    TRANSITION_RATIO,
    R,
    arch_name,
    arm,
    base_lr,
    curve,
    onset_table,
    part,
    spike_label,
    sweeps,
)
from runner.report.style import figure, save

ARM_COLORS = {"plain": "tab:red", "clip": "tab:cyan", "controller": "tab:orange"}
ARM_STYLES = {"plain": "-", "clip": "--", "controller": "-"}
ARM_LABELS = {"plain": "plain Adam", "clip": "clip_grad_norm(1)", "controller": "rho-controller"}
DIR_STYLE = {"descent": ("tab:red", "-", "gradient step (-grad)"), "random": ("tab:blue", "-", "random (median)"),
             "randmax": ("tab:blue", ":", "random (max)"), "ascent": ("0.5", "--", "+grad (ascent)")}
ARCH_LABELS = {"linear": "Linear", "mlp": "MLP", "cnn": "CNN", "mlp_ln": "MLP+LN", "cnn_bn": "CNN+BN",
               "transformer": "TinyTransformer"}


def _title(cfg: dict, what: str) -> str:
    return f"ghosts_softmax ({cfg.get('scale')}): {what}"


def _mark_spike(ax, cfg: dict) -> None:
    s = cfg.get("schedule") or {}
    if s.get("start") is not None:
        ax.axvline(s["start"] + 1, color="0.3", ls="--", lw=0.8)


def _r_axes(ax, ylabel: str, log_y: bool = True) -> None:
    ax.axvline(1.0, color="k", ls="--", lw=0.9)
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set(xlabel="r = tau / rho_a (step length / radius)", ylabel=ylabel)


def _sweep_panel(ax, dfs: list[pd.DataFrame], kinds: list[str], ylabel: str, log_y: bool) -> None:
    for d in kinds:
        try:
            curves = pd.concat([curve(df, d) for df in dfs], axis=1)
        except KeyError:
            continue
        color, ls, label = DIR_STYLE[d.split("_", 1)[1]]
        mean = curves.mean(axis=1)
        ax.plot(mean.index, mean, color=color, ls=ls, lw=1.4, label=f"{label} (n={curves.shape[1]})")
        if curves.shape[1] > 1:
            sd = curves.std(axis=1)
            ax.fill_between(mean.index, (mean - sd).clip(lower=1e-3), mean + sd, color=color, alpha=0.15, lw=0)
    _r_axes(ax, ylabel, log_y)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path | None:
    if cfg.get("study"):  # a declared study's run: drawn in the report's figures
        return None
    if part(cfg) in ("randdirs", "phase_ln"):
        return _checkpoint_panels([df], Path(out_dir) / "sweep.png", cfg, part(cfg))
    if part(cfg) in ("rsweep", "temperature"):
        fig, axes = figure(ncols=2, width=5.0)
        _sweep_panel(axes[0, 0], [df], ["ratio_descent", "ratio_random", "ratio_randmax", "ratio_ascent"],
                     "loss ratio L(theta + tau v) / L(theta)", True)
        axes[0, 0].axhline(FAIL_RATIO if part(cfg) == "rsweep" else 2.0, color="0.4", ls=":", lw=0.9)
        _sweep_panel(axes[0, 1], [df], ["acc_descent", "acc_random", "acc_ascent"], "train accuracy kept (%)", False)
        axes[0, 0].legend(fontsize=7)
        what = arch_name(cfg) if part(cfg) == "rsweep" else f"T = {cfg['trainer']['temperature']:g}"
        fig.suptitle(_title(cfg, f"one-step sweep, {what}, seed {cfg.get('seed')}"))
        return save(fig, Path(out_dir) / "sweep.png")
    if R not in df:
        return None
    fig, axes = figure(ncols=2, width=5.0)
    ax = axes[0, 0]
    ax.plot(df.step, df[TEST_ACC], color=ARM_COLORS[arm(cfg)])
    ax.set(xlabel="update", ylabel="test accuracy (%)", ylim=(-2, 102))
    ax = axes[0, 1]
    ax.plot(df.step, df[R], color=ARM_COLORS[arm(cfg)], label="r (applied)")
    if R_RAW in df:
        ax.plot(df.step, df[R_RAW], color="0.5", lw=0.8, label="r proposed by the optimizer")
    ax.axhline(1.0, color="k", ls="--", lw=0.9)
    ax.set(xlabel="update", ylabel="r = tau / rho_a", yscale="log")
    ax.legend()
    for a in axes[0]:
        _mark_spike(a, cfg)
    fig.suptitle(_title(cfg, f"{ARM_LABELS[arm(cfg)]}, base LR {base_lr(cfg):g}, seed {cfg.get('seed')}"))
    return save(fig, Path(out_dir) / "spike.png")


def _band(ax, runs: list, column: str, name: str, log: bool = False) -> None:
    """Mean +- SD over seeds (of log10 values when `log`) of one arm."""
    m = pd.concat([r.metrics.set_index("step")[column].dropna() for r in runs], axis=1)
    if log:
        m = np.log10(m.clip(lower=1e-12))
    mean, sd = m.mean(axis=1), m.std(axis=1).fillna(0.0)
    lo, hi = (10 ** (mean - sd), 10 ** (mean + sd)) if log else (mean - sd, mean + sd)
    mean = 10 ** mean if log else mean
    ax.plot(mean.index, mean, color=ARM_COLORS[name], ls=ARM_STYLES[name], lw=1.3,
            label=f"{ARM_LABELS[name]} (n={len(runs)})")
    ax.fill_between(mean.index, lo, hi, color=ARM_COLORS[name], alpha=0.2, lw=0)


def plot_spike(runs: list, out_dir: Path) -> Path | None:
    """Test accuracy per arm (mean +- SD over seeds), one row per spike and one panel per base LR; the
    last row shows r per update for the held spike (geometric mean, +- SD of log10 r)."""
    groups: dict = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if part(r.cfg) == "spike" and r.status.get("status") == "completed" and TEST_ACC in r.metrics:
            groups[(spike_label(r.cfg), base_lr(r.cfg))][arm(r.cfg)].append(r)
    if not groups:
        return None
    spikes = sorted({k[0] for k in groups}, key=lambda s: (not s.startswith("held"), s))
    lrs = {s: sorted(k[1] for k in groups if k[0] == s) for s in spikes}
    rows = [(s, TEST_ACC) for s in spikes] + [(spikes[0], R)]
    fig, axes = figure(ncols=max(len(v) for v in lrs.values()), nrows=len(rows), width=4.2, height=3.0)
    for i, (spike, column) in enumerate(rows):
        for j in range(axes.shape[1]):
            ax = axes[i, j]
            if j >= len(lrs[spike]):
                ax.set_visible(False)
                continue
            lr = lrs[spike][j]
            for name in ("plain", "clip", "controller"):  # the controller on top
                if not (rs := groups[(spike, lr)].get(name)):
                    continue
                _band(ax, rs, column, name, log=column == R)
                _mark_spike(ax, rs[0].cfg)
            if column == R:
                ax.axhline(1.0, color="k", ls="--", lw=0.9)
                ax.set(yscale="log", ylabel="r = tau / rho_a", title=f"r per update, base LR {lr:g}")
            else:
                ax.set(ylim=(-2, 102), ylabel="test accuracy (%)", title=f"{spike}, base LR {lr:g}")
            ax.set_xlabel("update (dashed: first spiked update)")
            if j == 0:
                ax.legend(loc="center right" if column == TEST_ACC else "upper left", fontsize=7)
    fig.suptitle(_title(runs[0].cfg, f"LR spike, Adam on digits (MLP 64-128-10); r row: {spikes[0]}"))
    return save(fig, Path(out_dir) / "ghosts_softmax_spike.png")


def plot_rsweep(runs: list, out_dir: Path) -> list[Path]:
    by_arch: dict = defaultdict(list)
    for r in runs:
        if part(r.cfg) == "rsweep" and r.status.get("status") == "completed":
            by_arch[arch_name(r.cfg)].append(r.metrics)
    if not by_arch:
        return []
    archs = [a for a in ARCHITECTURES if a in by_arch] + sorted(a for a in by_arch if a not in ARCHITECTURES)
    out = []
    for what, kinds, ylabel, log_y in (
            ("loss", ["ratio_descent", "ratio_random", "ratio_randmax", "ratio_ascent"],
             "loss ratio L(theta + tau v) / L(theta)", True),
            ("acc", ["acc_descent", "acc_random", "acc_ascent"], "train accuracy kept (%)", False)):
        ncols = min(3, len(archs))
        nrows = -(-len(archs) // ncols)
        fig, axes = figure(ncols=ncols, nrows=nrows, width=4.2, height=3.2)
        for ax, a in zip(axes.flat, archs):
            _sweep_panel(ax, by_arch[a], kinds, ylabel, log_y)
            if what == "loss":
                ax.axhline(FAIL_RATIO, color="0.4", ls=":", lw=0.9)
            ax.set_title(ARCH_LABELS.get(a, a))
        for ax in list(axes.flat)[len(archs):]:
            ax.set_visible(False)
        axes[0, 0].legend(fontsize=7, loc="upper left" if what == "loss" else "lower left")
        fig.suptitle(_title(runs[0].cfg, f"one step of r * rho_a, mean +- SD over seeds "
                                         f"({'dotted: failure threshold 1.1; ' if what == 'loss' else ''}"
                                         f"dashed: r = 1)"))
        out.append(save(fig, Path(out_dir) / f"ghosts_softmax_rsweep_{what}.png"))
    return out


def _checkpoint_panels(dfs: list, path: Path, cfg: dict, what: str) -> Path | None:
    """One panel per checkpoint: every random direction (grey), the median random direction and +grad
    (each seed), the r = 1 line; for randdirs Figure 8's values at r = 1 as markers, for phase_ln the
    onset window."""
    per_step: dict = defaultdict(list)
    for df in dfs:
        for i, sw in enumerate(sweeps(df)):
            per_step[sw["step"] if what == "randdirs" else i].append(sw)
    if not per_step:
        return None
    keys = sorted(per_step)
    fig, axes = figure(ncols=len(keys), width=4.2, height=3.4)
    for ax, k in zip(axes[0], keys):
        for j, sw in enumerate(per_step[k]):
            for c in sw.get("random_all", []):
                ax.plot(sw["r"], c, color="0.75", lw=0.5, alpha=0.5)
            ax.plot(sw["r"], sw["random"], color="tab:blue", lw=1.4, label="median random" if j == 0 else None)
            if "ascent" in sw:
                ax.plot(sw["r"], sw["ascent"], color="tab:red", lw=1.4, label="+grad" if j == 0 else None)
            if "descent" in sw:
                ax.plot(sw["r"], sw["descent"], color="0.3", ls="--", lw=1.0, label="-grad" if j == 0 else None)
        ax.axvline(1.0, color="k", ls="--", lw=0.9)
        ax.set_xscale("log")
        accs = [sw["probe_acc"] for sw in per_step[k]]
        if what == "randdirs":
            name, acc, rnd, grad = FIG8.get(k, (f"step {k}", float("nan"), None, None))
            if rnd is not None:
                ax.plot([1.0, 1.0], [rnd, grad], ls="none", marker="o", mfc="none", color="k", ms=6,
                        label="paper (Fig. 8) at r = 1")
            ax.axhline(TRANSITION_RATIO, color="0.4", ls=":", lw=0.9)
            ax.set(ylim=(0, 10), xlim=(0.1, 30), title=f"{name}: {k} updates, train acc {np.mean(accs):.0f} % "
                                                        f"(paper {acc} %)")
        else:
            ax.axvspan(*NEAR_ONE, color="tab:green", alpha=0.12, lw=0)
            ax.axhline(FAIL_RATIO, color="0.4", ls=":", lw=0.9)
            ax.set(yscale="log", ylim=(0.1, 100), title=f"checkpoint {k + 1} (acc targets 0.84/0.95/0.98)")
        ax.set(xlabel="r = tau / rho_a", ylabel="loss ratio L(theta + tau v) / L(theta)")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    label = ("random directions, linear classifier, SGD lr 0.1 (Fig. 8); dotted: loss ratio 2" if what == "randdirs"
             else "random directions, MLP+LN (official phase-transition script); green: [0.8, 1.25]; dotted: 1.1")
    fig.suptitle(_title(cfg, f"{label}; {len(dfs)} run(s)"))
    return save(fig, path)


def plot_randdirs(runs: list, out_dir: Path) -> list[Path]:
    out = []
    for what in ("randdirs", "phase_ln"):
        sel = [r for r in runs if part(r.cfg) == what and r.status.get("status") == "completed"]
        if sel:
            p = _checkpoint_panels([r.metrics for r in sel], Path(out_dir) / f"ghosts_softmax_{what}.png",
                                   sel[0].cfg, what)
            if p is not None:
                out.append(p)
    return out


def plot_temperature(runs: list, out_dir: Path) -> Path | None:
    temp = [r for r in runs if part(r.cfg) == "temperature" and r.status.get("status") == "completed"
            and SWEEP + "onset_descent" in r.metrics]
    t = onset_table(temp)
    if t.empty:
        return None
    fig, axes = figure(ncols=3, width=4.4, height=3.4)
    temps = sorted(t["T"].unique())
    cmap = __import__("matplotlib").colormaps["viridis"]
    colors = {T: cmap(i / max(len(temps) - 1, 1)) for i, T in enumerate(temps)}
    for r in temp:
        T = float(r.cfg["trainer"]["temperature"])
        c = curve(r.metrics, "ratio_descent")
        rho = float(r.metrics[SWEEP + "rho_descent"].dropna().iloc[-1])
        first = r is next(x for x in temp if float(x.cfg["trainer"]["temperature"]) == T)
        axes[0, 0].plot(c.index * rho, c, color=colors[T], lw=0.9, label=f"T = {T:g}" if first else None)
        axes[0, 1].plot(c.index, c, color=colors[T], lw=0.9)
    axes[0, 0].set(xscale="log", yscale="log", xlabel="raw step length tau", ylabel="loss ratio (descent step)",
                   title="vs raw step length")
    _r_axes(axes[0, 1], "loss ratio (descent step)")
    axes[0, 1].set_title("vs r = tau * Delta_a / (pi T)")
    for a in axes[0, :2]:
        a.axhline(2.0, color="0.4", ls=":", lw=0.9)
    axes[0, 0].legend(fontsize=7)
    ax = axes[0, 2]
    for col, color, label in (("onset_tau", "tab:gray", "raw tau*"), ("onset_r", "tab:orange", "normalised r*")):
        logs = np.log10(t[col]).groupby(t["T"])
        mean, sd = logs.mean(), logs.std().fillna(0.0)
        ax.errorbar(mean.index, 10 ** mean, yerr=[10 ** mean - 10 ** (mean - sd), 10 ** (mean + sd) - 10 ** mean],
                    color=color, marker="o", capsize=3, label=f"{label} (SD of log10 across T: {mean.std():.3f})")
    ax.set(xscale="log", yscale="log", xlabel="temperature T", ylabel="onset threshold (loss ratio >= 2)",
           title="onset thresholds vs T")
    ax.set_xticks(temps, [f"{T:g}" for T in temps], minor=False)
    ax.minorticks_off()
    ax.legend(fontsize=7)
    fig.suptitle(_title(temp[0].cfg, "temperature, MLP 64-128-128-10 GELU trained on CE(z/T); one descent step; "
                                     "geometric mean +- SD over seeds"))
    return save(fig, Path(out_dir) / "ghosts_softmax_temperature.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    out = [plot_spike(runs, out_dir), *plot_rsweep(runs, out_dir), *plot_randdirs(runs, out_dir),
           plot_temperature(runs, out_dir)]
    return [p for p in out if p is not None]
