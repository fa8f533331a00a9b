"""Smoke suite: the wall time of every experiment's smoke scale, as a user runs it.

Experiments are the folders experiments/<id>/ (runner.experiments); each runs in a subprocess as `make <id>`
(its smoke sweep and claim report) when the Makefile has that target, else as one
`optrun experiment=<id>` run, into a temporary results directory. Target: <= 2 minutes each (the
project's smoke budget on 2 CPU cores). A non-zero exit (a failing claim, an error) is noted. With
`quick` only one experiment runs. This benchmark's time grows with the number of experiments (about
a minute each), so `make bench` leaves it out (harness.OPT_IN) and `make bench-smoke` runs it.
"""
from __future__ import annotations

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
TIMEOUT_S = 600.0


def experiments() -> list[str]:
    return registry.ids()


def make_targets(makefile: Path = ROOT / "Makefile") -> set[str]:
    text = makefile.read_text() if makefile.exists() else ""
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.M))


def command(exp: str, results: Path, targets: set[str]) -> list[str]:
    venv = Path(sys.executable).parent.parent
    if exp in targets and shutil.which("make"):
        return ["make", "--no-print-directory", exp, f"RESULTS={results}", f"VENV={venv}", "NO_INSTALL=1"]
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'optrun'; from runner.cli import main; main()",
            "reproduce", exp, f"results_dir={results}", "progress=false", "--no-card"]


def time_one(exp: str, targets: set[str]) -> tuple[float, int | None, Path]:
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
        return time.perf_counter() - t, rc, log


def run(quick: bool = False) -> None:
    exps, targets = experiments(), make_targets()
    if quick:
        exps = [e for e in exps if e == "stability_gap"] or exps[:1]
        note(f"quick mode: only {', '.join(exps)} of {len(experiments())} experiments timed")
    for exp in exps:
        wall, rc, log = time_one(exp, targets)
        how = "make" if exp in targets else "optrun"
        record(f"smoke/{exp}: `{how} {exp}` wall time vs the 2-minute budget", wall, BUDGET_S, "s", "<=1",
               raw={"seconds": [wall], "returncode": rc, "command": how, "log": str(log)})
        if rc != 0:
            what = f"stopped after {TIMEOUT_S:.0f} s" if rc is None else f"exited with {rc}"
            note(f"smoke/{exp}: `{how} {exp}` {what} (a failing claim or an error); see logs/{log.name}")


if __name__ == "__main__":
    run()
