"""`optrun status [results_dir] [--json] [--experiment ID]`: where a sweep stands, from the run folders alone.

What a person runs on a login node while jobs run on the cluster: per experiment, the runs by state, the
failing runs' one-line errors, and how many claims passed. It reads only `status.json`, `run.lock`,
`summary.json` and the tail of `metrics.csv`, and changes nothing.

States: `completed`, `diverged` (both finished), `failed` (with its error), `running` (status running and
`run.lock` held by a live process: on this host by its pid, elsewhere by a lock refreshed at every flush),
`stale` (status running but no live lock: killed, or preempted and waiting for its requeue; the next
launch resumes it from its checkpoint), `unknown` (no or unreadable status.json).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runner.report.runs import _experiment_of, _last_activity, find_run_dirs, read_status
from runner.results import RunDir, read_json

STATES = ("completed", "diverged", "failed", "running", "stale", "unknown")


def run_state(path: Path) -> dict:
    """{run, state, step, error, interrupted, claims: (passed, total), headline: (passed, total)}."""
    status, why = read_status(path)
    row = {"run": path.name, "path": str(path), "state": "unknown", "step": None, "error": why}
    if status is None:
        return row
    state = status.get("status")
    row["step"] = status.get("step")
    if state == "running":
        owner = read_json(path / "run.lock")
        live = bool(owner) and RunDir(path)._owner_alive(owner)
        state = "running" if live else "stale"
        _, logged = _last_activity(path, status)
        row["step"] = logged if logged is not None else row["step"]
        row["interrupted"] = status.get("interrupted")
    elif state == "failed":
        row["error"] = str(status.get("error") or "no error recorded").strip().splitlines()[0]
    elif state not in ("completed", "diverged"):
        state, row["error"] = "unknown", f"unknown status {state!r}"
    row["state"] = state
    claims = (read_json(path / "summary.json") or {}).get("claims") or []
    row["claims"] = [sum(bool(c.get("passed")) for c in claims), len(claims)]
    heads = [c for c in claims if c.get("kind") == "headline"]
    row["headline"] = [sum(bool(c.get("passed")) for c in heads), len(heads)]
    return row


def collect(root: Path, experiment: str | None = None) -> dict:
    """{experiment_id: {"counts": {state: n}, "claims": [passed, total], "headline": [...], "runs": [...]}}."""
    out: dict = {}
    for path in find_run_dirs(root):
        exp = _experiment_of(path)
        if exp in ("bench", "site") or (experiment and exp != experiment):
            continue
        entry = out.setdefault(exp, {"counts": dict.fromkeys(STATES, 0), "claims": [0, 0], "headline": [0, 0], "runs": []})
        row = run_state(path)
        entry["runs"].append(row)
        entry["counts"][row["state"]] += 1
        for key in ("claims", "headline"):
            if row.get(key):
                entry[key] = [entry[key][0] + row[key][0], entry[key][1] + row[key][1]]
    return dict(sorted(out.items()))


def table(report: dict) -> str:
    if not report:
        return "no runs found"
    width = max(12, *(len(e) for e in report))
    head = f"{'experiment':<{width}}  {'runs':>4}  " + "  ".join(f"{s:>9}" for s in STATES) + "  claims passed"
    lines = [head, "-" * len(head)]
    for exp, entry in report.items():
        c, h = entry["claims"], entry["headline"]
        claims = f"{c[0]}/{c[1]}" + (f" (headline {h[0]}/{h[1]})" if h[1] else "") if c[1] else "-"
        lines.append(f"{exp:<{width}}  {len(entry['runs']):>4}  "
                     + "  ".join(f"{entry['counts'][s]:>9}" for s in STATES) + f"  {claims}")
        for row in entry["runs"]:
            if row["state"] in ("failed", "unknown"):
                lines.append(f"    {row['state']}: {row['run']}: {row['error']}")
            elif row["state"] in ("running", "stale"):
                extra = f" ({row['interrupted']})" if row.get("interrupted") else ""
                lines.append(f"    {row['state']}: {row['run']} at step {row['step']}{extra}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="optrun status", description=__doc__.splitlines()[0])
    ap.add_argument("results_dir", nargs="?", default="results", help="the results tree (default: results)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--experiment", help="only this experiment id")
    args = ap.parse_args(argv)
    root = Path(args.results_dir)
    if not root.is_dir():
        print(f"optrun status: error: results_dir '{root}' is not a folder", file=sys.stderr)
        return 2
    report = collect(root, args.experiment)
    print(json.dumps(report, indent=1) if args.json else table(report))
    return 0
