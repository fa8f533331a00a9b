"""Start-up: how long a fresh `optrun` process takes to reach its first training step, compared with
`python -c "import torch"`, and `optrun --help` (which must import no torch).

Each side is a new interpreter, run in turn (torch, run, help; repeated, after a warm-up round that
fills the file cache and the data cache), with the same environment. The run is the root config
(an MLP on scikit-learn digits, SGD) for one step on the CPU, progress bar off, `force=true` so every
repeat runs; `device=cpu` leaves CUDA's own initialisation, which no start-up work of optrun's could
save, out of the comparison. Times run from the parent's `time.time()` just before it starts the
child to:

- the run's first step: the end of its first optimizer step, which the child writes with
  `time.time()` to `$OPTRUN_FIRST_STEP_FILE` (`runner.startup.mark_first_step`), so interpreter
  start-up, imports, config checks, Hydra, building data, model and optimizer and the forward,
  backward and update of step 1 all count;
- `python -c "import torch"`: the end of the process (what `time python -c "import torch"` says,
  the issue's reference) and, stricter, the line after `import torch` (its exit, 0.3-0.4 s that the
  run's time does not include, left out too).

Rows: seconds to the first step vs `python -c "import torch"` (target <= 1.5); the same vs the end of
the import (no target: how much the exit of the reference weighs); the whole one-step run (process
wall: its files, summary and exit) vs `python -c "import torch"` (no target); `optrun --help` vs
`python -c "import torch"` (no target); and the torch modules `optrun --help` imports (`python -X
importtime`) vs `import torch`'s (target <= 0: none).
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runner.bench import default_threads, paired_ratio, record

ROOT = Path(__file__).resolve().parent.parent
OPTRUN = [sys.executable, "-c", "import sys; sys.argv[0] = 'optrun'; from runner.cli import main; main()"]
TORCH = [sys.executable, "-c", "import sys, time; import torch; open(sys.argv[1], 'w').write(repr(time.time()))"]
RUN = ["trainer.steps=1", "device=cpu", "progress=false", "force=true"]


def _env(**extra: str) -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(default_threads()), **extra}


def _timed(cmd: list[str], env: dict, mark: Path | None = None) -> tuple[float, float | None]:
    """(process wall seconds, seconds from start to the time the child wrote to `mark`)."""
    if mark is not None:
        mark.unlink(missing_ok=True)
    start, t = time.time(), time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[-3:])} exited with {p.returncode}: {(p.stderr or p.stdout).strip()[-500:]}")
    if mark is None:
        return wall, None
    if not mark.exists():
        raise RuntimeError(f"{' '.join(cmd[-3:])} wrote no time to {mark} (did the run take an optimizer step?)")
    return wall, float(mark.read_text()) - start


def torch_modules(cmd: list[str], env: dict) -> list[str]:
    """The torch modules `cmd` imports, from `python -X importtime`'s report on stderr."""
    p = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", p.stderr, flags=re.M)
    return [n for n in names if n == "torch" or n.startswith("torch.")]


def run(quick: bool = False) -> None:
    repeats, warmup = (3, 1) if quick else (5, 1)
    with tempfile.TemporaryDirectory(prefix="optrun-startup-") as tmp:
        tmp = Path(tmp)
        torch_mark, step_mark = tmp / "torch.time", tmp / "step.time"
        run_env, env = _env(OPTRUN_FIRST_STEP_FILE=str(step_mark)), _env()
        run_cmd = [*OPTRUN, *RUN, f"results_dir={tmp / 'results'}"]
        t = {k: [] for k in ("torch_wall", "torch_ready", "run_wall", "run_first_step", "help_wall")}
        for r in range(warmup + repeats):
            torch_wall, torch_ready = _timed([*TORCH, str(torch_mark)], env, torch_mark)
            run_wall, first_step = _timed(run_cmd, run_env, step_mark)
            help_wall, _ = _timed([*OPTRUN, "--help"], env)
            if r >= warmup:
                for k, v in zip(t, (torch_wall, torch_ready, run_wall, first_step, help_wall)):
                    t[k].append(v)
        help_torch, torch_all = torch_modules([*OPTRUN, "--help"], env), torch_modules(TORCH + [str(torch_mark)], env)
    med = {k: statistics.median(v) for k, v in t.items()}
    raw = {"seconds": t, "run": " ".join(["optrun", *RUN]), "repeats": repeats, "warmup": warmup}

    def row(name: str, ours: str, ref: str, target: str = "") -> None:
        record(f"startup/{name}", med[ours], med[ref], "s", target, raw=raw, ratio=paired_ratio(t[ours], t[ref]))

    row("first step of a one-step `optrun` run vs `python -c \"import torch\"` (process start to the end of "
        "step 1 vs to the end of the process)", "run_first_step", "torch_wall", "<=1.5")
    row("first step of a one-step `optrun` run vs the end of `import torch` (the reference's exit left out)",
        "run_first_step", "torch_ready")
    row("whole one-step `optrun` run vs `python -c \"import torch\"` (process wall: files, summary, exit)",
        "run_wall", "torch_wall")
    row("`optrun --help` vs `python -c \"import torch\"` (process wall)", "help_wall", "torch_wall")
    record("startup/torch modules imported by `optrun --help` vs by `import torch` (python -X importtime)",
           len(help_torch), len(torch_all), "modules", "<=0", raw={"optrun --help": help_torch})


if __name__ == "__main__":
    run()
