"""`make bench`: run every `bench_*.py` in its own process, then render BENCH.md.

Each benchmark file defines `run(quick: bool = False) -> None` and records its rows with
`runner.bench.record`. It runs in a subprocess so that a crash, a hang (timeout) or a changed thread
setting in one cannot stop or skew the others; its output goes to `logs/<name>.log` and its outcome
(ok / failed / timeout, wall time, last error line) to `runs.json`. BENCH.md then shows every row,
the notes (skipped sections), the benchmarks that failed, and the machine the numbers came from.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from runner.bench import default_threads, read_notes, read_rows

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# Benchmarks that run only when named (`python -m bench smoke`, `make bench-smoke`): their time grows
# with the number of experiments (one to four minutes each), which would break `make bench`'s 10 minutes.
OPT_IN = {"smoke": "the smoke suite (every experiment's `make <id>`, one to four minutes each): `make bench-smoke`"}
_CHILD = "import runpy, sys; runpy.run_path(sys.argv[1])['run'](quick=sys.argv[2] == '1')"


def discover(directory: str | Path = BENCH_DIR, only: list[str] = ()) -> list[Path]:
    """bench_*.py files in `directory`, by name; `only` selects some ('loop' or 'bench_loop'), which may
    include the OPT_IN ones; without `only` those are left out."""
    files = sorted(Path(directory).glob("bench_*.py"))
    if not only:
        return [f for f in files if f.stem.removeprefix("bench_") not in OPT_IN]
    if only:
        wanted = {n.removesuffix(".py").removeprefix("bench_") for n in only}
        unknown = wanted - {f.stem.removeprefix("bench_") for f in files}
        if unknown:
            raise SystemExit(f"bench: unknown benchmark(s) {', '.join(sorted(unknown))} "
                             f"(have: {', '.join(f.stem.removeprefix('bench_') for f in files)})")
        files = [f for f in files if f.stem.removeprefix("bench_") in wanted]
    return files


def _last_error(log: str) -> str:
    lines = [line for line in log.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors or lines or [""])[-1].strip()[:300]


def run_one(path: Path, out_dir: Path, quick: bool = False, timeout: float = 600, threads: int | None = None) -> dict:
    """Run one benchmark file in a fresh interpreter; return its outcome (never raises)."""
    name = path.stem
    env = {**os.environ, "OPTRUN_BENCH_DIR": str(out_dir.resolve()), "OPTRUN_BENCH_NAME": name,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    if threads:
        env["OPTRUN_BENCH_THREADS"] = str(threads)
    log = out_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        try:
            rc = subprocess.run([sys.executable, "-c", _CHILD, str(path), "1" if quick else "0"], cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            rc, status = None, "timeout"
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    error = "" if status == "ok" else (f"no result within {timeout:.0f} s" if status == "timeout" else _last_error(text))
    return {"bench": name, "status": status, "returncode": rc, "wall_s": round(wall, 2), "error": error,
            "log": str(log.relative_to(out_dir))}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu, "cores": os.cpu_count(), "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version(), "load_1min": load}


def _cell(v: str) -> str:
    return str(v).replace("|", "\\|")


def render(out_dir: Path, runs: list[dict], info: dict) -> str:
    """BENCH.md: the machine, every comparison row, notes, and the benchmarks that failed."""
    rows, notes = read_rows(out_dir / "summary.csv"), read_notes(out_dir)
    met = {"true": "yes", "false": "**no**", "": ""}
    gpu = info.get("gpu") or "none (CUDA section skipped)"
    load = info.get("load_1min")
    lines = ["# optrun benchmarks", "",
             f"Measured {info.get('date')} on {info.get('cpu')} ({info.get('cores')} cores), GPU: {gpu}; "
             f"torch {info.get('torch')}, Python {info.get('python')}, {info.get('threads')} CPU thread(s) per "
             f"benchmark{', quick mode' if info.get('quick') else ''}."
             + (f" Load average at the start: {load:.1f} (other work on the machine makes absolute times noisy;"
                " the two sides of each ratio were interleaved)." if load is not None else ""),
             "",
             "`ratio` = ours / reference (both in `unit`); for timings run side by side, `ours` and `reference` "
             "are the medians of each side and `ratio` is the median of the per-round ratios (each round runs "
             "the sides back to back, so drift of the machine during the benchmark cancels), which can differ a "
             "little from the quotient of the medians. `met` says whether the ratio satisfies `target`. "
             "Raw timings of every repeat: `raw/<name>.json`.", "",
             "| comparison | ours | reference | unit | ratio | target | met |",
             "|---|---:|---:|---|---:|---|---|"]
    lines += [f"| {_cell(r['name'])} | {r['ours']} | {r['reference']} | {_cell(r['unit'])} | {r['ratio']} | "
              f"{_cell(r['target'])} | {met.get(r.get('met', ''), r.get('met', ''))} |" for r in rows]
    if not rows:
        lines.append("| (no rows recorded) | | | | | | |")
    targets = [r for r in rows if r.get("met") in ("true", "false")]
    lines += ["", f"Targets met: {sum(r['met'] == 'true' for r in targets)} of {len(targets)}."]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n['bench'] + ': ' if n.get('bench') else ''}{n['note']}" for n in notes]
    lines += ["", "## Benchmarks run", "", "| benchmark | status | wall s | log |", "|---|---|---:|---|"]
    lines += [f"| {r['bench']} | {r['status']} | {r['wall_s']} | {r['log']} |" for r in runs]
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        lines += ["", "## Failed benchmarks", ""]
        lines += [f"- {r['bench']}: {r['status']}: {_cell(r['error'])} (see {r['log']})" for r in failed]
    return "\n".join(lines) + "\n"


def _fresh(out_dir: Path, names: list[str], full: bool) -> list[dict]:
    """Clear what the selected benchmarks will rewrite; return the earlier runs to keep."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_file = out_dir / "runs.json"
    if full:
        for f in ("summary.csv", "notes.jsonl", "runs.json", "BENCH.md"):
            (out_dir / f).unlink(missing_ok=True)
        for d in ("raw", "logs"):
            shutil.rmtree(out_dir / d, ignore_errors=True)
        return []
    kept = [n for n in read_notes(out_dir) if n.get("bench") not in names]
    notes = out_dir / "notes.jsonl"
    notes.write_text("".join(json.dumps(n) + "\n" for n in kept)) if kept else notes.unlink(missing_ok=True)
    old = json.loads(runs_file.read_text())["runs"] if runs_file.exists() else []
    return [r for r in old if r["bench"] not in names]


def run_all(files: list[Path], out_dir: Path, quick: bool = False, timeout: float = 600, threads: int | None = None,
            full: bool = True, echo=print) -> list[dict]:
    """Run the files one after another, then write runs.json and BENCH.md; return the outcomes."""
    out_dir = Path(out_dir)
    runs = _fresh(out_dir, [f.stem for f in files], full)
    info = {**machine(), "quick": quick, "threads": threads or default_threads()}
    if full:  # a fresh results directory: say what the default run leaves out and how to add it
        left = [n for n in OPT_IN if n not in {f.stem.removeprefix("bench_") for f in files}]
        with open(out_dir / "notes.jsonl", "a") as fh:
            fh.writelines(json.dumps({"bench": f"bench_{n}", "note": f"not run by default: {OPT_IN[n]}"}) + "\n"
                          for n in left)  # tagged with that benchmark, so running it later drops the note
    for f in files:
        echo(f"bench: {f.stem} ...", end=" ", flush=True)
        r = run_one(f, out_dir, quick=quick, timeout=timeout, threads=threads)
        echo(f"{r['status']} ({r['wall_s']:.0f} s){': ' + r['error'] if r['error'] else ''}")
        runs.append(r)
    (out_dir / "runs.json").write_text(json.dumps({"machine": info, "runs": runs}, indent=2) + "\n")
    (out_dir / "BENCH.md").write_text(render(out_dir, runs, info))
    return runs
