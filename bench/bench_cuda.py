"""The GPU section; skipped with a note when CUDA is not available.

1. The loop comparison of bench_loop with the data resident on the GPU (the DataLoader loop keeps
   its data on the host and copies each batch, as such scripts do).
2. `compile=true` (torch.compile) and `precision=bf16` (autocast) vs eager fp32: optrun's steps/s.
3. The paper-scale stability_gap (Split-MNIST, MLP 784-400-400, 10 epochs per task, evaluation
   every iteration), one seed of ER: wall time with evaluation vs training alone. Needs MNIST under
   data/ (or $OPTRUN_MNIST_DIR); skipped with a note without it.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch

from bench.common import compare_loops, compose, optrun_factory, run_optrun, workdir
from runner.bench import note, record, round_robin, set_threads

ROOT = Path(__file__).resolve().parent.parent


def compare_speed_options(device: str, steps: int, repeats: int, warmup: int, prefix: str = "cuda/") -> None:
    base = ["dataset=mnist1d", "model=mlp", f"device={device}", f"trainer.steps={steps}"]
    out = workdir()
    sides = {"eager_fp32": optrun_factory(compose(*base), out),
             "bf16": optrun_factory(compose(*base, "precision=bf16"), out)}
    compiled = compose(*base, "compile=true")
    run_optrun(compiled, out)  # compile once (the first call pays it), then time the steady state
    sides["compile"] = optrun_factory(compiled, out)
    t = round_robin(sides, repeats=repeats, warmup=warmup)
    rate = {k: steps / statistics.median(v) for k, v in t.items()}
    raw = {"steps": steps, "seconds": t}
    record(f"{prefix}mlp_mnist1d: optrun compile=true vs eager fp32", rate["compile"], rate["eager_fp32"], "steps/s", "",
           raw=raw)
    record(f"{prefix}mlp_mnist1d: optrun precision=bf16 vs eager fp32", rate["bf16"], rate["eager_fp32"], "steps/s", "",
           raw=raw)


def paper_stability_gap() -> None:
    data_dir = os.environ.get("OPTRUN_MNIST_DIR", str(ROOT / "data"))
    over = ["experiment=stability_gap", "scale=paper", "device=cuda", f"dataset.base.data_dir={data_dir}"]
    out = workdir()
    try:
        timed = {}
        for name, cfg in (("with_eval", compose(*over)), ("training_alone", compose(*over, "hooks=[]"))):
            t = time.perf_counter()
            state = run_optrun(cfg, out)
            torch.cuda.synchronize()
            timed[name] = time.perf_counter() - t
    except Exception as e:  # most often: MNIST is not on this machine
        note(f"cuda/paper-scale stability_gap skipped ({type(e).__name__}: {(str(e).splitlines() or [''])[0]}); "
             "put MNIST under data/ or set OPTRUN_MNIST_DIR")
        return
    record("cuda/stability_gap paper scale (Split-MNIST, eval every iteration): wall time vs training alone",
           timed["with_eval"], timed["training_alone"], "s", "", raw={"seconds": timed, "steps": state.step})


def run(quick: bool = False) -> None:
    if not torch.cuda.is_available():
        note("CUDA section skipped: no GPU on this machine (the loop comparison on the GPU, compile=true and "
             "precision=bf16 vs eager fp32, paper-scale stability_gap)")
        return
    set_threads()
    steps, repeats = (100, 2) if quick else (500, 5)
    compare_loops("cuda/", "cuda", steps=steps, repeats=repeats, warmup=1, target=">=0.9")
    compare_speed_options("cuda", steps, repeats, warmup=1)
    if not quick:
        paper_stability_gap()


if __name__ == "__main__":
    run()
