"""Tidy tables from runs: one row per run (config flattened), aggregates over seeds, per-step curves.

A *setting* is one combination of the config values that vary across an experiment's runs, seed
excepted (and keys that never change what is computed: `results_dir`, `device`, ...). Aggregates
are over the completed runs of a setting (mean, SD, count); diverged runs are counted, not averaged.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd

from runner.report.runs import Run, final_metrics

NOT_A_SETTING = {"seed", "results_dir", "force", "progress", "threads", "flush_every", "device"}
LEAD = ("step", "task", "time_s")


def flatten_config(cfg: dict, prefix: str = "") -> dict:
    """{'optimizer': {'lr': 0.1}} -> {'optimizer.lr': 0.1}; lists become their JSON text."""
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten_config(v, key + "."))
        elif isinstance(v, (dict, list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: name, status, scale, study, arm, seed, steps, `cfg.<key>` columns, `final.<metric>` columns."""
    rows = []
    for r in runs:
        rows.append({"run": r.name, "status": r.status.get("status"), "scale": r.scale, "study": r.study,
                     "arm": r.arm, "seed": r.seed,
                     "steps": r.status.get("step"), "diverged_at": r.diverged_at, "wall_s": r.status.get("wall_s"),
                     "notes": "; ".join(r.notes),
                     **{f"cfg.{k}": v for k, v in flatten_config(r.cfg).items()},
                     **{f"final.{k}": v for k, v in final_metrics(r).items()}})
    return pd.DataFrame(rows)


def setting_columns(table: pd.DataFrame) -> list[str]:
    """The `cfg.*` columns whose value differs between runs (seed and bookkeeping keys excepted)."""
    cols = []
    for c in table.columns:
        if not c.startswith("cfg.") or c[4:] in NOT_A_SETTING:
            continue
        if table[c].astype(str).nunique(dropna=False) > 1:
            cols.append(c)
    return cols


def label_columns(table: pd.DataFrame, cols: list[str]) -> list[str]:
    """The fewest setting columns that still tell the settings apart (for labels; grouping uses all).

    A column whose value follows from the others (e.g. `dataset.angles` from `dataset._target_`) is
    dropped, trying columns with missing values first and `_target_` columns last.
    """
    def n_groups(cs):
        return len(table[cs].astype(str).drop_duplicates()) if cs else 1
    full = n_groups(cols)
    keep = list(cols)
    for c in sorted(cols, key=lambda c: (not table[c].isna().any(), c.endswith("._target_"), -cols.index(c))):
        rest = [k for k in keep if k != c]
        if n_groups(rest) == full:
            keep = rest
    return keep


def _short_keys(cols: list[str]) -> dict[str, str]:
    """'cfg.trainer.method' -> 'method', 'cfg.dataset._target_' -> 'dataset'; longer when ambiguous."""
    def tail(c: str, n: int) -> str:
        parts = [p for p in c[4:].split(".") if p != "_target_"] or [c[4:]]
        return ".".join(parts[-n:])
    names = {c: tail(c, 1) for c in cols}
    for n in (2, 3, 99):
        clash = {c for c in cols if list(names.values()).count(names[c]) > 1}
        if not clash:
            break
        names.update({c: tail(c, n) for c in clash})
    return names


def _short_value(col: str, v) -> str:
    if isinstance(v, float) and np.isnan(v):
        return "-"
    s = str(v)
    return s.rsplit(".", 1)[-1] if col.endswith("._target_") else s


def setting_label(values: dict, cols: list[str]) -> str:
    """'method=er, dataset=rotated' for a run's values of the setting columns ('all runs' if none)."""
    names = _short_keys(cols)
    return ", ".join(f"{names[c]}={_short_value(c, values.get(c))}" for c in cols) or "all runs"


def group_by_setting(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs grouped by setting (seeds together), labelled by the varying config values, in a stable order."""
    table = runs_table(runs)
    cols = setting_columns(table) if len(table) else []
    shown = label_columns(table, cols)
    groups: dict[str, list[Run]] = {}
    for r, (_, row) in zip(runs, table.iterrows()):
        groups.setdefault(setting_label(row.to_dict(), shown), []).append(r)
    return dict(sorted(groups.items()))


def aggregate(table: pd.DataFrame) -> pd.DataFrame:
    """Per setting: n_runs, n_completed, n_diverged, seeds, and `<metric>.mean/.sd/.n` over completed runs."""
    if table.empty:
        return pd.DataFrame()
    cols = setting_columns(table)
    shown = label_columns(table, cols)
    keys = ["scale", *cols] if "scale" in table and "cfg.scale" not in cols else cols
    metrics = [c for c in table.columns if c.startswith("final.") and pd.api.types.is_numeric_dtype(table[c])]
    grouped = table.groupby(keys, dropna=False, sort=True) if keys else [((), table)]
    rows = []
    for key, g in grouped:
        key = key if isinstance(key, tuple) else (key,)
        done = g[g.status == "completed"]
        row = {**dict(zip(keys, key)), "setting": setting_label(dict(zip(keys, key)), shown),
               "n_runs": len(g), "n_completed": len(done), "n_diverged": int((g.status == "diverged").sum()),
               "seeds": " ".join(str(s) for s in sorted(g.seed.dropna().tolist()))}
        for m in metrics:
            vals = done[m].replace([np.inf, -np.inf], np.nan).dropna()
            name = m[len("final."):]
            row[f"{name}.mean"] = vals.mean() if len(vals) else np.nan
            row[f"{name}.sd"] = vals.std(ddof=1) if len(vals) > 1 else np.nan
            row[f"{name}.n"] = len(vals)
        rows.append(row)
    return pd.DataFrame(rows)


def steps_table(runs: list[Run]) -> pd.DataFrame:
    """Long format: one row per (run, logged step) with run, status, seed, the setting columns and every metric."""
    table = runs_table(runs)
    if table.empty:
        return pd.DataFrame()
    cols = setting_columns(table)
    shown = label_columns(table, cols)
    parts = []
    for r, (_, row) in zip(runs, table.iterrows()):
        head = {"run": r.name, "status": row["status"], "scale": r.scale, "seed": r.seed,
                "setting": setting_label(row.to_dict(), shown), **{c: row[c] for c in cols}}
        own = [c for c in r.metrics.columns if c not in head]
        parts.append(r.metrics[own].assign(**head)[[*head, *own]])
    return pd.concat(parts, ignore_index=True, sort=False)


def curve_stats(runs: list[Run], metric: str, x: str = "step", log: bool = False) -> pd.DataFrame:
    """mean, sd, n, lo, hi of `metric` at each `x` over the given runs (e.g. the seeds of one setting).

    lo/hi are mean -/+ SD; with `log=True` mean is the geometric mean and lo/hi divide/multiply it
    by the geometric SD (statistics of log10 values, non-positive values ignored), for log axes.
    """
    series = [r.metrics.dropna(subset=[metric]).drop_duplicates(x, keep="last").set_index(x)[metric]
              for r in runs if metric in r.metrics and x in r.metrics]
    if not series:
        return pd.DataFrame(columns=["mean", "sd", "n", "lo", "hi"])
    wide = pd.concat(series, axis=1).replace([np.inf, -np.inf], np.nan).sort_index()
    if log:
        wide = np.log10(wide.where(wide > 0))
    mean, sd = wide.mean(axis=1), wide.std(axis=1, ddof=1)
    out = pd.DataFrame({"mean": mean, "sd": sd, "n": wide.count(axis=1), "lo": mean - sd, "hi": mean + sd})
    if log:
        out[["mean", "lo", "hi"]] = 10.0 ** out[["mean", "lo", "hi"]]
    return out


def spans_decades(runs: list[Run], metric: str, decades: float = 2.0) -> bool:
    """Whether `metric` is positive in every run and spans >= `decades` powers of ten (a log axis fits)."""
    vals = pd.concat([r.metrics[metric] for r in runs if metric in r.metrics], ignore_index=True) if runs else None
    if vals is None or vals.empty:
        return False
    vals = vals.replace([np.inf, -np.inf], np.nan).dropna()
    return bool(len(vals) and (vals > 0).all() and np.log10(vals.max() / vals.min()) >= decades)


def write_table(df: pd.DataFrame, path: Path) -> list[Path]:
    """`path` as CSV, and next to it as parquet when pyarrow is importable."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)
    written = [path]
    if importlib.util.find_spec("pyarrow") is not None:
        pq = path.with_suffix(".parquet")
        try:
            df.astype({c: str for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])}).to_parquet(pq, index=False)
            written.append(pq)
        except Exception:  # noqa: BLE001 -- parquet is a convenience copy; the CSV is the record
            pq.unlink(missing_ok=True)
    return written
