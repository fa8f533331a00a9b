"""Figures in the style of the WSD paper: loss along the path with decay branches forked at each
budget, the checkpoints of every schedule side by side, and the loss split by row type."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.wsd.claims import EXCESS, budgets, excess_at, population, schedule_of
from runner.report.style import figure, save

STYLE = {"wsd": ("WSD", "tab:blue"), "wsd_s": ("WSD-S", "tab:green"), "cyclic_cosine": ("Cyclic-Cosine", "tab:orange"),
         "cosine": ("cosine, tuned per budget", "0.35")}
DRAW_ORDER = ("cosine", "cyclic_cosine", "wsd_s", "wsd")  # WSD on top of WSD-S (they coincide up to B_1)
LINE = {"wsd": dict(lw=1.1), "wsd_s": dict(lw=3.0, alpha=0.55), "cyclic_cosine": dict(lw=1.3),
        "cosine": dict(lw=1.0, ls="--")}


def _ordered(groups: dict) -> list:
    return sorted(groups.items(), key=lambda kv: (DRAW_ORDER.index(kv[0].split("@")[0]), kv[0]))


def _title(cfg: dict, what: str) -> str:
    return f"wsd ({cfg.get('scale', 'smoke')}): {what}"


def _evaluated(df: pd.DataFrame, metric: str = EXCESS) -> pd.DataFrame:
    return df[df[metric].notna() & df["path_step"].notna()] if "path_step" in df else df.iloc[0:0]


def _branch(df: pd.DataFrame, b: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fork row, rows of the discarded branch to budget b): the updates right after the fork."""
    fork = df[df["fork"] == b].iloc[-1:]
    end = df[df["budget"] == b].step.iloc[-1]
    return fork, df[(df.step > fork.step.iloc[0]) & (df.step <= end)]


def _paths(df: pd.DataFrame, cfg: dict, metric: str) -> list[tuple[str, pd.Series]]:
    """(label, metric by path step): the path itself, then each discarded decay branch from its fork."""
    ev = _evaluated(df, metric)
    out = [("path", ev[ev.phase != "branch"].set_index("path_step")[metric])]
    if schedule_of(cfg) == "wsd":
        for b in budgets(cfg)[:-1]:
            fork, branch = _branch(df, b)
            rows = pd.concat([fork, branch])
            out.append((f"branch@{b}", rows.set_index("path_step")[metric].dropna()))
    return out


def _mean_sd(series: list[pd.Series]) -> tuple[pd.Series, pd.Series]:
    table = pd.concat(series, axis=1)
    table = table[~table.index.duplicated(keep="last")].sort_index()
    return table.mean(axis=1), table.std(axis=1).fillna(0.0)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    """Excess population loss against the updates consumed (discarded branches included), and the LR."""
    fig, axes = figure()
    ax = axes[0, 0]
    ev = df[df[EXCESS].notna()]
    name = schedule_of(cfg) or "run"
    ax.plot(ev.step, ev[EXCESS], color=STYLE.get(name, ("", "k"))[1], lw=1.2, label="excess loss")
    ck = df[df.get("budget", pd.Series(dtype=float)).notna()] if "budget" in df else df.iloc[0:0]
    ax.scatter(ck.step, ck[EXCESS], marker="D", color="k", zorder=5, s=22, label="budget checkpoints")
    ax.set(yscale="log", xlabel="updates consumed (incl. discarded branches)", ylabel="excess population loss (nats)",
           title=_title(cfg, f"{STYLE.get(name, (name,))[0]}, seed {cfg.get('seed')}"))
    lr_ax = ax.twinx()
    tr = df[df.lr.notna()] if "lr" in df else df.iloc[0:0]
    lr_ax.plot(tr.step, tr.lr, color="0.6", lw=0.7, ls="--")
    lr_ax.set_ylabel("learning rate (dashed)")
    ax.legend(loc="upper right")
    return save(fig, Path(out_dir) / "excess_loss.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    groups: dict[str, list] = defaultdict(list)
    for r in runs:
        name = schedule_of(r.cfg)
        if name and r.status.get("status") == "completed" and EXCESS in r.metrics and "path_step" in r.metrics:
            key = name if name != "cosine" else f"cosine@{budgets(r.cfg)[0]}"
            groups[key].append(r)
    if not groups:
        return []
    any_run = next(iter(groups.values()))[0]
    fig, axes = figure(ncols=2, nrows=2, width=6.0, height=3.9)
    ax_path, ax_bars, ax_rows, ax_lr = axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1]

    # (a) excess loss along the path, WSD branches dotted, mean +- SD over seeds
    for key, rs in _ordered(groups):
        k = key.split("@")[0]
        label, color = STYLE[k]
        per_label = defaultdict(list)
        for r in rs:
            for name, s in _paths(r.metrics, r.cfg, EXCESS):
                per_label[name].append(s)
        for name, series in per_label.items():
            mean, sd = _mean_sd(series)
            labelled = k != "cosine" or key == min(g for g in groups if g.startswith("cosine@"))
            lab = f"{label} (n={len(rs)})" if name == "path" and labelled else None
            style = dict(ls=":", lw=1.8) if name.startswith("branch") else LINE[k]
            ax_path.plot(mean.index, mean, color=color, label=lab, **style)
            ax_path.fill_between(mean.index, mean - sd, mean + sd, color=color, alpha=0.15, lw=0)
    ax_path.set(yscale="log", xlabel="training step along the path", ylabel="excess population loss (nats)",
                title=_title(any_run.cfg, "excess loss (WSD branches dotted)"))
    ax_path.legend(loc="upper right", fontsize=7)

    # (b) checkpoints at every budget, per schedule, mean +- SD
    bud = budgets(groups.get("wsd", groups.get("wsd_s", next(iter(groups.values()))))[0].cfg)
    rows = []
    for key, rs in sorted(groups.items()):
        k = key.split("@")[0]
        for b in bud if k != "cosine" else [int(key.split("@")[1])]:
            vals = [excess_at(r.metrics, "budget", b) for r in rs if b in budgets(r.cfg)]
            steps = np.mean([r.metrics.step.max() for r in rs])
            rows.append((k, b, np.mean(vals), np.std(vals), steps))
    kinds = [k for k in STYLE if any(r[0] == k for r in rows)]
    width = 0.8 / max(len(kinds), 1)
    for i, k in enumerate(kinds):
        sel = [r for r in rows if r[0] == k]
        x = [bud.index(r[1]) + (i - (len(kinds) - 1) / 2) * width for r in sel if r[1] in bud]
        label, color = STYLE[k]
        total = f"{sel[0][4]:,.0f} steps" if k != "cosine" else f"{sum(r[4] for r in sel):,.0f} steps in all"
        ax_bars.bar(x, [r[2] for r in sel if r[1] in bud], width, yerr=[r[3] for r in sel if r[1] in bud],
                    color=color, label=f"{label} ({total})", capsize=2)
    ax_bars.set_xticks(range(len(bud)), [f"{b:,}" for b in bud])
    ax_bars.set(xlabel="budget (steps)", ylabel="excess population loss at checkpoint (nats)",
                title=_title(any_run.cfg, "checkpoint quality per budget"))
    ax_bars.legend(fontsize=7)

    # (c) WSD split by row type: the decay removes most of the deterministic rows' excess
    for metric, color, label in ((population("excess_det"), "tab:purple", "deterministic rows"),
                                 (population("excess_hi"), "tab:brown", "high-entropy rows")):
        per_label = defaultdict(list)
        for r in groups.get("wsd", []):
            for name, s in _paths(r.metrics, r.cfg, metric):
                per_label[name].append(s)
        for name, series in per_label.items():
            mean, _ = _mean_sd(series)
            ax_rows.plot(mean.index, mean, color=color, ls=":" if name.startswith("branch") else "-", lw=1.2,
                         label=label if name == "path" else None)
    ax_rows.set(yscale="log", xlabel="training step along the path", ylabel="excess loss by row type (nats)",
                title=_title(any_run.cfg, "WSD, loss split by row type"))
    ax_rows.legend(fontsize=7)

    # (d) the learning rates (seed of the first run of each schedule)
    for key, rs in _ordered(groups):
        k = key.split("@")[0]
        if k == "cosine" and key != f"cosine@{bud[-1]}":
            continue
        df = rs[0].metrics
        tr = df[df.lr.notna()]
        ax_lr.plot(tr[tr.phase != "branch"].path_step, tr[tr.phase != "branch"].lr, color=STYLE[k][1],
                   label=STYLE[k][0], **LINE[k])
        for b in (budgets(rs[0].cfg)[:-1] if k == "wsd" else []):
            part = _branch(df, b)[1]
            ax_lr.plot(part.path_step, part.lr, color=STYLE[k][1], ls=":", lw=1.8)
    ax_lr.set(xlabel="training step along the path", ylabel="learning rate",
              title=_title(any_run.cfg, "schedules (cosine tuned to the last budget)"))
    ax_lr.legend(fontsize=7)
    return [save(fig, Path(out_dir) / "wsd.png")]
