"""`optrun-report PATH [--check]`: aggregate every run under PATH, per experiment.

For each experiment found it writes, into `<results_dir>/<experiment>/`: `runs.csv` (one row per
run, config flattened, final metrics), `claims.json`, `report.md` (claim table + figures) and the
experiment's figures. Runs that are still running, failed or unreadable are listed with the reason
and left out. `--check` exits 1 when any claim fails.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

from runner.dispatch import experiment_module
from runner.report.claims_table import aggregate_claims, markdown, text
from runner.report.runs import Run, load_runs
from runner.results import atomic_write, write_json


def runs_table(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for r in runs:
        flat = pd.json_normalize(r.cfg, sep=".").iloc[0].to_dict() if r.cfg else {}
        flat = {f"cfg.{k}": (str(v) if isinstance(v, (list, dict)) else v) for k, v in flat.items()}
        final = {f"final.{k}": v for k, v in (r.summary.get("metrics") or {}).items()}
        rows.append({"run": r.path.name, "status": r.status.get("status"), "steps": r.status.get("step"),
                     "wall_s": r.status.get("wall_s"), **flat, **final})
    return pd.DataFrame(rows)


def report_experiment(exp: str, runs: list[Run], skipped: list, out_dir: Path) -> list[dict]:
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_table(runs).to_csv(out_dir / "runs.csv", index=False)
    claims_mod = experiment_module(exp, "claims")
    rows = aggregate_claims(claims_mod.CLAIMS, runs) if claims_mod else []
    if claims_mod and hasattr(claims_mod, "cross_run_claims"):  # claims that compare runs (A vs B)
        rows += claims_mod.cross_run_claims([r for r in runs if r.status.get("status") == "completed"])
    write_json(out_dir / "claims.json", rows)
    plots = experiment_module(exp, "plots")
    figures = plots.plot_report(runs, out_dir) if plots and hasattr(plots, "plot_report") else []
    n_done = sum(r.status.get("status") == "completed" for r in runs)
    n_div = sum(r.status.get("status") == "diverged" for r in runs)
    md = [f"# {exp}: claim report", "",
          f"{len(runs)} runs read ({n_done} completed, {n_div} diverged), {len(skipped)} left out.", ""]
    md += [markdown(rows) if rows else "_This experiment declares no claims._", ""]
    md += [f"![{Path(f).stem}]({Path(f).name})" for f in figures]
    if skipped:
        md += ["", "## Left out", ""] + [f"- `{p}`: {why}" for p, why in skipped]
    atomic_write(out_dir / "report.md", "\n".join(md) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="optrun-report", description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default="results", help="a results tree or one experiment's folder")
    ap.add_argument("--check", action="store_true", help="exit 1 if any claim fails")
    args = ap.parse_args(argv)
    root = Path(args.path)
    if not root.exists():
        print(f"optrun-report: error: {root} does not exist", file=sys.stderr)
        return 2
    runs, skipped = load_runs(root)
    for p, why in skipped:
        print(f"optrun-report: left out {p}: {why}", file=sys.stderr)
    by_exp: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_exp[r.experiment].append(r)
    failed = False
    for exp, rs in sorted(by_exp.items()):
        out_dir = rs[0].path.parent
        rows = report_experiment(exp, rs, [s for s in skipped if s[0].parent == out_dir], out_dir)
        print(f"\n== {exp}: {len(rs)} runs -> {out_dir / 'report.md'}")
        if rows:
            print(text(rows))
        failed |= any(not r["passed"] for r in rows)
    if not by_exp:
        print(f"optrun-report: no finished runs under {root}")
    if args.check and failed:
        print("\noptrun-report: some claims FAILED", file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
