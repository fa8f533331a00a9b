"""`optrun reproduce <id> [scale=smoke|paper] [hydra/launcher=...] [overrides...]`.

Runs every study and arm that `experiments/<id>/studies.yaml` declares for the scale, each as one
Hydra multirun (so every launcher, SLURM included, and resume work as for `optrun -m`), then the
report: tables, figures, the claim table in the paper's card, and the exit code. A user override
replaces the same key of every arm (`seed=0` runs one seed instead of the declared sweep). The exit
code is 1 when a headline claim fails or an arm's sweep failed, 2 for bad input.

Arms run two at a time (`--jobs=N`, default `auto`) where that should change no number: at smoke scale,
with no launcher chosen by the user or the arms, on a machine with at least two cores, when the runs pin their
torch threads (`threads: t` with 2t <= cores; every run is seeded on its own). Each arm then runs in a
worker process of its own and its output is printed in one piece when it ends. Smoke experiments are
mostly many short runs whose time outside the training loop (composing the config, figures, claims) is
larger than the loop itself; two at a time cut dadao's `make` from 73 s to 55 s on 2 cores, with
every metrics.csv equal (tests/test_reproduce_jobs.py checks this at one seed).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from runner import experiments
from runner.errors import OptrunError

USAGE = ("usage: optrun reproduce <id> [scale=smoke|paper] [hydra/launcher=slurm|local_parallel] "
         "[key=value ...] [--jobs=auto|N] [--dry-run] [--no-card]")


def parse(argv: list[str]) -> tuple[str, str, list[str], set[str]]:
    flags = {a for a in argv if a.startswith("--")}
    unknown = {f for f in flags if not f.startswith("--jobs=")} - {"--dry-run", "--no-card", "--help"}
    if unknown:
        raise OptrunError(f"reproduce: unknown option(s) {', '.join(sorted(unknown))}; {USAGE}")
    rest = [a for a in argv if not a.startswith("--")]
    if not rest or "=" in rest[0]:
        raise OptrunError(f"reproduce: which experiment? ({', '.join(experiments.ids())}); {USAGE}")
    exp, overrides = rest[0], rest[1:]
    experiments.folder(exp)  # an unknown id is one line naming the known ones
    scale = next((o.split("=", 1)[1] for o in overrides if o.startswith("scale=")), "smoke")
    if scale not in experiments.SCALES:
        raise OptrunError(f"scale={scale}: expected one of {', '.join(experiments.SCALES)}")
    return exp, scale, [o for o in overrides if not o.startswith("scale=")], flags


def jobs_flag(flags: set[str]) -> str:
    value = next((f.split("=", 1)[1] for f in flags if f.startswith("--jobs=")), "auto")
    if value != "auto" and not (value.isdigit() and int(value) >= 1):
        raise OptrunError(f"reproduce: --jobs={value}: expected auto or an integer >= 1")
    return value


def auto_jobs(scale: str, plan: list, user: list[str]) -> int:
    """2 arms at a time where the runs pin their threads (see the module docstring), else 1."""
    cores = os.cpu_count() or 1
    if scale != "smoke" or len(plan) < 2 or cores < 2:
        return 1
    if any(o.startswith("hydra/launcher=") for o in user + [o for _, _, ovr in plan for o in ovr]):
        return 1  # the user's launcher, or arms that already run their runs in parallel
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([o for o in plan[0][2] if not o.startswith("hydra/")])
    first_job = BasicSweeper.split_arguments(parsed, None)[0][0]  # the sweep's first combination
    threads = experiments.compose(first_job).get("threads")
    return 2 if threads and 2 * int(threads) <= cores else 1


def _arm_in_worker(overrides: list[str], log: str, blas_threads: int) -> tuple[int, float]:
    """One arm's sweep in a worker process, its output (file descriptors 1 and 2) into `log`. numpy's
    and scipy's BLAS get the worker's share of the cores: OpenBLAS threads spin while they wait, and two
    workers with a pool each as wide as the machine ran no faster than one arm at a time."""
    from threadpoolctl import threadpool_limits

    from runner.cli import run

    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "w") as f:
        os.dup2(f.fileno(), 1), os.dup2(f.fileno(), 2)
        t = time.perf_counter()
        try:
            with threadpool_limits(limits=blas_threads, user_api="blas"):
                code = run(["-m", *overrides])
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
    return code, time.perf_counter() - t


def run_arms_parallel(exp: str, scale: str, plan: list, jobs: int) -> list[str]:
    """Every arm, `jobs` at a time, each printed whole when it ends; the arms that failed. Bad input in
    the first arm (exit 2) stops the rest: it is every arm's."""
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="optrun-arms-") as tmp, \
            ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        pending = {}
        for i, (study, arm, overrides) in enumerate(plan, 1):
            log = os.path.join(tmp, f"{i}.log")
            pending[pool.submit(_arm_in_worker, overrides, log, max(1, (os.cpu_count() or 1) // jobs))] = (i, study, arm, log)
        print(f"== optrun reproduce {exp} [{scale}]: {len(plan)} arms, {jobs} at a time (--jobs=1: one at a time)",
              flush=True)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: pending[f][0]):
                i, study, arm, log = pending.pop(fut)
                print(f"== optrun reproduce {exp} [{scale}] {i}/{len(plan)}: study {study}, arm {arm}", flush=True)
                try:
                    code, seconds = fut.result()
                except Exception as e:  # the worker died (killed, out of memory): the other arms go on
                    code, seconds = 1, float("nan")
                    print(f"optrun reproduce: the worker running {study}/{arm} failed: {e!r}", file=sys.stderr)
                if os.path.exists(log):
                    sys.stdout.write(open(log).read())
                print(f"   arm {study}/{arm} took {seconds:.1f} s", flush=True)
                if code == OptrunError.exit_code and i == 1:
                    for f in pending:
                        f.cancel()
                    return [f"{study}/{arm} (exit {code}: bad input)"]
                if code != 0:
                    failed.append(f"{study}/{arm} (exit {code})")
    return failed


def main(argv: list[str]) -> int:
    from runner.cli import run

    if "--help" in argv or "-h" in argv:
        print(__doc__.strip().splitlines()[0] + "\n\n" + USAGE)
        return 0
    try:
        exp, scale, user, flags = parse(argv)
        plan = experiments.arm_runs(exp, scale, user)
        jobs = jobs_flag(flags)
        jobs = min(auto_jobs(scale, plan, user) if jobs == "auto" else int(jobs), len(plan))
    except OptrunError as e:
        print(f"optrun: error: {e}", file=sys.stderr)
        return OptrunError.exit_code
    results = next((o.split("=", 1)[1] for o in user if o.startswith("results_dir=")), "results")
    failed = []
    t_arms = time.perf_counter()
    if jobs > 1 and "--dry-run" not in flags:
        failed = run_arms_parallel(exp, scale, plan, jobs)
        if failed and failed[0].endswith("bad input)"):
            return OptrunError.exit_code
        plan = []
    for i, (study, arm, overrides) in enumerate(plan, 1):
        print(f"== optrun reproduce {exp} [{scale}] {i}/{len(plan)}: study {study}, arm {arm}", flush=True)
        if "--dry-run" in flags:
            print("   optrun -m " + " ".join(overrides))
            continue
        t = time.perf_counter()
        code = run(["-m", *overrides])
        print(f"   arm {study}/{arm} took {time.perf_counter() - t:.1f} s", flush=True)
        if code == OptrunError.exit_code and i == 1:
            return code  # the first arm's bad input is every arm's: stop here with its message
        if code != 0:
            failed.append(f"{study}/{arm} (exit {code})")
    if "--dry-run" in flags:
        return 0
    from runner.report.cli import main as report

    args = [str(Path(results) / exp), "--check"] + ([] if "--no-card" in flags else ["--update-cards"])
    t_report = time.perf_counter()
    code = report(args)
    print(f"== optrun reproduce {exp}: arms {t_report - t_arms:.1f} s, report {time.perf_counter() - t_report:.1f} s",
          flush=True)
    if failed:
        print(f"optrun reproduce: sweeps that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or code else 0
