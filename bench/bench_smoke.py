"""Smoke suite: the wall time of every experiment's smoke scale, as a user runs it.

Experiments are the folders experiments/<id>/ (runner.experiments); each runs in a subprocess as `make <id>`
(its smoke sweep and claim report) when the Makefile has that target, else as one
`optrun experiment=<id>` run, into a temporary results directory. Target: <= 2 minutes each (the
project's smoke budget on 2 CPU cores). A non-zero exit (a failing claim, an error) is noted. With
`quick` only one experiment runs. This benchmark's time grows with the number of experiments (one to
four minutes each), so `make bench` leaves it out (harness.OPT_IN) and `make bench-smoke` runs it.

Where the time goes, per experiment (a note each, and in the raw file): the arms' sweeps and the report
as `optrun reproduce` times them, the training loops inside the runs (the sum of each run's engine time
from its status.json, and the number of runs), and the rest of the wall time: start-up (make, Python,
imports) and exit. A last row compares the sum over all experiments with the 30-minute budget the
issue sets for the whole suite (30 papers x 1 minute).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runner import experiments as registry
from runner.bench import bench_dir, note, record

ROOT = registry.ROOT
BUDGET_S = 120.0
SUITE_BUDGET_S = 30 * 60.0
TIMEOUT_S = 600.0
_ARM = re.compile(r"^\s+arm \S+ took ([0-9.]+) s$", re.M)
_TOTALS = re.compile(r"^== optrun reproduce \S+: arms ([0-9.]+) s, report ([0-9.]+) s$", re.M)


def experiments() -> list[str]:
    """Every experiment, or those named in $OPTRUN_BENCH_SMOKE (comma-separated) to re-time a few."""
    only = [e for e in os.environ.get("OPTRUN_BENCH_SMOKE", "").split(",") if e]
    unknown = sorted(set(only) - set(registry.ids()))
    if unknown:
        raise SystemExit(f"OPTRUN_BENCH_SMOKE: unknown experiment(s) {', '.join(unknown)}")
    return [e for e in registry.ids() if e in only] if only else registry.ids()


def make_targets(makefile: Path = ROOT / "Makefile") -> set[str]:
    text = makefile.read_text() if makefile.exists() else ""
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.M))


def command(exp: str, results: Path, targets: set[str]) -> list[str]:
    venv = Path(sys.executable).parent.parent
    if exp in targets and shutil.which("make"):
        return ["make", "--no-print-directory", exp, f"RESULTS={results}", f"VENV={venv}", "NO_INSTALL=1"]
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'optrun'; from runner.cli import main; main()",
            "reproduce", exp, f"results_dir={results}", "progress=false", "--no-card"]


def breakdown(wall: float, log_text: str, results: Path) -> dict:
    """Seconds per part of one smoke reproduction: arms, report, the runs' training loops, the rest."""
    totals = _TOTALS.findall(log_text)
    arms, report = (float(totals[-1][0]), float(totals[-1][1])) if totals else (sum(map(float, _ARM.findall(log_text))), 0.0)
    loops = []
    for f in Path(results).glob("*/*/status.json"):
        try:
            loops.append(float(json.loads(f.read_text()).get("wall_s") or 0.0))
        except (OSError, ValueError):
            continue
    return {"wall": round(wall, 2), "arms": round(arms, 2), "report": round(report, 2),
            "training_loops_sum": round(sum(loops), 2), "runs": len(loops),
            "startup_and_exit": round(max(wall - arms - report, 0.0), 2)}


def time_one(exp: str, targets: set[str]) -> tuple[float, int | None, Path, dict]:
    log = bench_dir() / "logs" / f"smoke_{exp}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix=f"optrun-smoke-{exp}-") as results, open(log, "w") as f:
        cmd = command(exp, Path(results), targets)
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        t = time.perf_counter()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            rc = None
        wall = time.perf_counter() - t
        f.flush()
        return wall, rc, log, breakdown(wall, log.read_text(errors="replace"), Path(results))


def run(quick: bool = False) -> None:
    exps, targets = experiments(), make_targets()
    if quick:
        exps = [e for e in exps if e == "stability_gap"] or exps[:1]
        note(f"quick mode: only {', '.join(exps)} of {len(experiments())} experiments timed")
    total = 0.0
    for exp in exps:
        wall, rc, log, parts = time_one(exp, targets)
        total += wall
        how = "make" if exp in targets else "optrun"
        record(f"smoke/{exp}: `{how} {exp}` wall time vs the 2-minute budget", wall, BUDGET_S, "s", "<=1",
               raw={"seconds": [wall], "returncode": rc, "command": how, "log": str(log), "parts": parts})
        note(f"smoke/{exp}: {wall:.0f} s = arms {parts['arms']:.0f} s (training loops {parts['training_loops_sum']:.0f} s "
             f"summed over {parts['runs']} runs) + report {parts['report']:.0f} s + start-up and exit "
             f"{parts['startup_and_exit']:.0f} s")
        if rc != 0:
            what = f"stopped after {TIMEOUT_S:.0f} s" if rc is None else f"exited with {rc}"
            note(f"smoke/{exp}: `{how} {exp}` {what} (a failing claim or an error); see logs/{log.name}")
    if not quick and not os.environ.get("OPTRUN_BENCH_SMOKE"):
        record(f"smoke/all {len(exps)} experiments: sum of wall times vs 30 minutes", total, SUITE_BUDGET_S, "s", "<=1",
               raw={"experiments": exps})


if __name__ == "__main__":
    run()
