"""`optrun reproduce <id> [scale=smoke|paper] [hydra/launcher=...] [overrides...]`.

Runs every study and arm that `experiments/<id>/studies.yaml` declares for the scale, each as one
Hydra multirun (so every launcher, SLURM included, and resume work as for `optrun -m`; at smoke scale
two runs at a time, see below), then the report: tables, figures, the claim table in the paper's card,
and the exit code. A user override replaces the same key of every arm (`seed=0` runs one seed instead
of the declared sweep). The exit code is 1 when a headline claim fails or an arm's sweep failed, 2 for
bad input.

Runs go two at a time (`--jobs=N`, default `auto`) where that should change no number: at smoke scale,
with no launcher chosen by the user (the arms' own `hydra/launcher=local_parallel` is replaced), on a
machine with at least two cores, when the runs pin their torch threads (`threads: t` with 2t <= cores;
every run is seeded on its own; every experiment's smoke scale pins one thread). Every run of every arm
is then one Hydra run (one composition; the same run folder as in the sweep) in a pool of worker
processes, each arm's overrides are checked once, and each arm's output is printed in one piece when
its last run ends. Smoke experiments are mostly many short runs whose time outside the training loop
(composing the config, figures, claims) is larger than the loop itself; two at a time cut dadao's
`make` from 73 s to 55 s on 2 cores, with every metrics.csv equal (tests/test_reproduce_jobs.py checks
this at one seed). One pool over runs, not arms, keeps both cores busy where an arm has an odd number
of runs (4 arms of 3 seeds: 6 rounds instead of 8).
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


OWN_LAUNCHER = "hydra/launcher=local_parallel"  # the arms' two-at-a-time launcher; the pool replaces it


def auto_jobs(scale: str, plan: list, user: list[str]) -> int:
    """2 runs at a time where the runs pin their threads (see the module docstring), else 1."""
    cores = os.cpu_count() or 1
    if scale != "smoke" or cores < 2 or sum(len(split_runs(ovr)) for _, _, ovr in plan) < 2:
        return 1
    if any(o.startswith("hydra/launcher=") for o in user) or \
            any(o.startswith("hydra/launcher=") and o != OWN_LAUNCHER for _, _, ovr in plan for o in ovr):
        return 1  # the user's launcher (SLURM, ...), or one an arm needs, decides
    try:
        threads = experiments.compose(split_runs(plan[0][2])[0]).get("threads")
    except Exception:  # noqa: BLE001 -- bad input: one at a time, where the first arm reports it as for optrun -m
        return 1
    return 2 if threads and 2 * int(threads) <= cores else 1


def split_runs(overrides: list[str]) -> list[list[str]]:
    """An arm's multirun overrides -> one override list per run (its sweep's combinations, in order),
    without the arm's own parallel launcher."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    groups = [o for o in overrides if o.startswith("hydra/") and o != OWN_LAUNCHER]
    if any(o.startswith("hydra/launcher=") for o in groups):
        return [overrides]  # another launcher (SLURM, ...) runs the arm's sweep: one job for the pool
    try:
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith("hydra/")])
    except HydraException as e:
        raise OptrunError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None
    return [groups + combo for batch in BasicSweeper.split_arguments(parsed, None) for combo in batch]


def _run_in_worker(overrides: list[str], log: str, blas_threads: int, check: list[str] | None) -> tuple[int, float]:
    """One run in a worker process, as a single Hydra run (one composition; the same run folder as in the
    arm's sweep, whose name comes from the overrides), its output (file descriptors 1 and 2) into `log`.
    `check`: the whole arm's overrides, checked here once (with its first run) instead of once per run.
    numpy's and scipy's BLAS get the worker's share of the cores: OpenBLAS threads spin while they wait,
    and two workers with a pool each as wide as the machine ran no faster than one at a time. A run that
    another live process is writing is skipped (exit 0), as a sweep skips it."""
    from threadpoolctl import threadpool_limits

    from runner.cli import run
    from runner.config_check import check_overrides
    from runner.errors import RunLocked

    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "w") as f:
        os.dup2(f.fileno(), 1), os.dup2(f.fileno(), 2)
        t = time.perf_counter()
        try:
            if check is not None:
                check_overrides(experiments.with_scale([o for o in check if o != OWN_LAUNCHER]))
            whole_sweep = any(o.startswith("hydra/launcher=") for o in overrides)  # another launcher (split_runs)
            with threadpool_limits(limits=blas_threads, user_api="blas"):
                code = run(["-m", *overrides] if whole_sweep else overrides, checked=True)
            code = 0 if code == RunLocked.exit_code else code
        except OptrunError as e:
            print(f"optrun: error: {e}", file=sys.stderr)
            code = OptrunError.exit_code
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
    return code, time.perf_counter() - t


def _read(log: str) -> str:
    return Path(log).read_text() if os.path.exists(log) else ""


def run_arms_parallel(exp: str, scale: str, plan: list, jobs: int) -> list[str]:
    """Every run of every arm, `jobs` at a time; each arm printed whole when its last run ends (with the
    sum of its runs' times); the arms that failed. Bad input in the first run (exit 2) stops the rest:
    it is every run's."""
    failed: list[str] = []
    arms = [(i, study, arm, ovr, split_runs(ovr)) for i, (study, arm, ovr) in enumerate(plan, 1)]
    left = {i: len(runs) for i, _, _, _, runs in arms}
    codes: dict[int, list] = {i: [] for i in left}
    with tempfile.TemporaryDirectory(prefix="optrun-runs-") as tmp, \
            ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        pending = {}
        for i, study, arm, whole, runs in arms:
            for k, ovr in enumerate(runs):
                log = os.path.join(tmp, f"{i}.{k}.log")
                fut = pool.submit(_run_in_worker, ovr, log, max(1, (os.cpu_count() or 1) // jobs),
                                  whole if k == 0 else None)
                pending[fut] = (i, k, study, arm, log)
        print(f"== optrun reproduce {exp} [{scale}]: {len(plan)} arms, {len(pending)} runs, {jobs} at a time "
              "(--jobs=1: one at a time)", flush=True)
        logs: dict[int, dict[int, str]] = {i: {} for i in left}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: pending[f][:2]):
                i, k, study, arm, log = pending.pop(fut)
                try:
                    code, seconds = fut.result()
                except Exception as e:  # the worker died (killed, out of memory): the other runs go on
                    code, seconds = 1, float("nan")
                    print(f"optrun reproduce: the worker running {study}/{arm} failed: {e!r}", file=sys.stderr)
                if code == OptrunError.exit_code and i == 1 and k == 0:
                    for f in pending:
                        f.cancel()
                    sys.stdout.write(_read(log))
                    return [f"{study}/{arm} (exit {code}: bad input)"]
                logs[i][k] = _read(log)
                codes[i].append((code, seconds))
                left[i] -= 1
                if left[i] == 0:
                    print(f"== optrun reproduce {exp} [{scale}] {i}/{len(plan)}: study {study}, arm {arm}", flush=True)
                    sys.stdout.write("".join(logs[i][k] for k in sorted(logs[i])))
                    print(f"   arm {study}/{arm} took {sum(sec for _, sec in codes[i]):.1f} s", flush=True)
                    bad = sorted({c for c, _ in codes[i] if c != 0})
                    if bad:
                        failed.append(f"{study}/{arm} (exit {', '.join(map(str, bad))})")
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
        jobs = min(auto_jobs(scale, plan, user) if jobs == "auto" else int(jobs),
                   sum(len(split_runs(ovr)) for _, _, ovr in plan))
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
