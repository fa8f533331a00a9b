"""`python -m bench [NAME ...] [--quick]`: run the benchmarks and write results/bench/BENCH.md.

Without names every `bench/bench_*.py` runs and the results directory starts afresh; with names
only those run and their rows replace the earlier ones. Exits 1 if a benchmark crashed or timed out
(a target that is not met is a finding, not a failure).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.harness import BENCH_DIR, discover, run_all


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="benchmarks to run (e.g. loop continual); default: all")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats (a check that it runs)")
    p.add_argument("--out", default="results/bench", help="results directory (default results/bench)")
    p.add_argument("--dir", default=str(BENCH_DIR), help="where the bench_*.py files are")
    p.add_argument("--timeout", type=float, default=600, help="seconds one benchmark may take (default 600)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default min(2, cores))")
    p.add_argument("--skip", nargs="*", default=[], help="benchmarks to leave out")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    a = p.parse_args(argv)
    files = discover(a.dir, a.names)
    skip = {s.removeprefix("bench_") for s in a.skip}
    files = [f for f in files if f.stem.removeprefix("bench_") not in skip]
    if a.list:
        print("\n".join(f.stem for f in files))
        return 0
    runs = run_all(files, Path(a.out), quick=a.quick, timeout=a.timeout, threads=a.threads,
                   full=not a.names and not skip)
    print(f"bench: wrote {Path(a.out) / 'BENCH.md'}")
    return 1 if any(r["status"] != "ok" for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
