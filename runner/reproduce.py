"""`optrun reproduce <id> [scale=smoke|paper] [hydra/launcher=...] [overrides...]`.

Runs every study and arm that `experiments/<id>/studies.yaml` declares for the scale, each as one
Hydra multirun (so every launcher, SLURM included, and resume work as for `optrun -m`), then the
report: tables, figures, the claim table in the paper's card, and the exit code. A user override
replaces the same key of every arm (`seed=0` runs one seed instead of the declared sweep). The exit
code is 1 when a headline claim fails or an arm's sweep failed, 2 for bad input.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from runner import experiments
from runner.errors import OptrunError

USAGE = ("usage: optrun reproduce <id> [scale=smoke|paper] [hydra/launcher=slurm|local_parallel] "
         "[key=value ...] [--dry-run] [--no-card]")


def parse(argv: list[str]) -> tuple[str, str, list[str], set[str]]:
    flags = {a for a in argv if a.startswith("--")}
    unknown = flags - {"--dry-run", "--no-card", "--help"}
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


def main(argv: list[str]) -> int:
    from runner.cli import run

    if "--help" in argv or "-h" in argv:
        print(__doc__.strip().splitlines()[0] + "\n\n" + USAGE)
        return 0
    try:
        exp, scale, user, flags = parse(argv)
        plan = experiments.arm_runs(exp, scale, user)
    except OptrunError as e:
        print(f"optrun: error: {e}", file=sys.stderr)
        return OptrunError.exit_code
    results = next((o.split("=", 1)[1] for o in user if o.startswith("results_dir=")), "results")
    failed = []
    t_arms = time.perf_counter()
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
