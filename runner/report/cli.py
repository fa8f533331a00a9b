"""`optrun-report [PATH] [--check]`: tables, figures and claim reports for every run under PATH.

For each experiment found it writes into its results folder: `runs.csv` (one row per run, config
flattened, final metrics), `aggregate.csv` (mean, SD, count over seeds per setting), `steps.csv`
(every logged step), `claims.json`, the figures and `report.md`. Given a whole results tree it also
writes `REPORT.md` there: one row per paper of the 30. Runs still running, failed or unreadable are
listed with the reason and left out. `--check` exits 1 when a headline claim fails (or an
experiment's claims/plots code raised). `--update-cards` refreshes each paper's card
(`experiments/<id>/README.md`) with the claim table; `--readme README.md` rewrites the top README's
table of papers from the cards. Given a whole results tree it also writes the offline results site,
`PATH/site/` (`index.html`, one page per paper with interactive curves, a run index; see
`runner/report/site.py`); `--site DIR` writes it elsewhere (or for one experiment's folder), `--no-site` skips it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from runner import experiments
from runner.report import card
from runner.report.claims_table import any_failed, text
from runner.report.experiment import ExperimentReport, report_experiment
from runner.report.overview import write_overview
from runner.report.runs import Run, Skipped, find_run_dirs, load_runs


def _common_dir(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in paths]))


def report_tree(root: Path, update_cards: bool = False) -> dict[str, ExperimentReport]:
    """Report every experiment under `root`; {experiment_id: ExperimentReport}."""
    runs, skipped = load_runs(root)
    for s in skipped:
        print(f"optrun-report: left out {s.path}: {s.reason}", file=sys.stderr)
    for r in runs:
        for note in r.notes:
            print(f"optrun-report: note {r.path}: {note}", file=sys.stderr)
    by_exp: dict[str, tuple[list[Run], list[Skipped]]] = {}
    for r in runs:
        by_exp.setdefault(r.experiment, ([], []))[0].append(r)
    for s in skipped:
        by_exp.setdefault(s.experiment, ([], []))[1].append(s)
    reports = {}
    for exp, (rs, sk) in sorted(by_exp.items()):
        out_dir = _common_dir([r.path for r in rs] or [s.path for s in sk])
        rep = report_experiment(exp, rs, sk, out_dir)
        reports[exp] = rep
        print(f"\n== {exp}: {len(rs)} runs read, {len(sk)} left out -> {out_dir / 'report.md'}")
        if rep.claims:
            print(text(rep.claims))
        for e in rep.errors:
            print(f"optrun-report: {exp}: {e}", file=sys.stderr)
        if any_failed(rep.claims, kinds=("check",)):
            print(f"optrun-report: {exp}: a check failed (it holds by construction: look for a bug)", file=sys.stderr)
        if update_cards and exp in experiments.folders() and rs:
            print(f"card: {card.refresh(exp, rep.claims, rs)}")
            if card.refresh_repo_readme(exp):
                print("README.md: table of papers refreshed from the cards")
    return reports


def is_results_root(root: Path) -> bool:
    """A results tree (experiment folders inside), not one experiment's folder (run folders inside)."""
    return not any(p.parent == root for p in find_run_dirs(root))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="optrun-report", description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default="results", help="a results tree or one experiment's folder")
    ap.add_argument("--check", action="store_true", help="exit 1 if any claim fails")
    ap.add_argument("--overview", type=Path, default=None,
                    help="where to write the 30-paper overview (default: PATH/REPORT.md for a whole results tree)")
    ap.add_argument("--no-overview", action="store_true", help="do not write the 30-paper overview")
    ap.add_argument("--failed-targets", default="", help="smoke targets that exited non-zero (space separated)")
    ap.add_argument("--site", type=Path, default=None,
                    help="where to write the offline results site (default: PATH/site for a whole results tree)")
    ap.add_argument("--no-site", action="store_true", help="do not write the results site")
    ap.add_argument("--update-cards", action="store_true", help="refresh the claim table in experiments/<id>/README.md")
    ap.add_argument("--readme", type=Path, default=None, help="rewrite this README's table of papers from the cards (and do nothing else)")
    args = ap.parse_args(argv)
    if args.readme is not None:
        changed = card.refresh_readme(args.readme)
        print(f"{args.readme}: table of papers {'rewritten' if changed else 'up to date'}")
        return 0
    root = Path(args.path)
    if not root.is_dir():
        print(f"optrun-report: error: {root} is not a folder", file=sys.stderr)
        return 2
    reports = report_tree(root, update_cards=args.update_cards)
    if not reports:
        print(f"optrun-report: no run folders under {root}")
    overview = args.overview or (root / "REPORT.md" if is_results_root(root) else None)
    if overview and not args.no_overview:
        print(f"\noverview: {write_overview(overview, reports, args.failed_targets.split())}")
    site = args.site or (root / "site" if is_results_root(root) else None)
    if site and not args.no_site:
        from runner.report.site import write_site

        print(f"site: {write_site(site, reports, args.failed_targets.split())}")
    failed = [exp for exp, rep in reports.items() if rep.failed]
    if args.check and failed:
        print(f"\noptrun-report: headline claims FAILED (or the report raised) for: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    from runner.startup import fast_exit

    fast_exit()  # the report loads torch (runner.results) and pandas: ~0.3 s less at exit
    sys.exit(main())


if __name__ == "__main__":
    entry()
