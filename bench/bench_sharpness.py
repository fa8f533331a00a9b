"""Sharpness hook against PyHessian and plain Hutchinson, on the same model, batch and machine.

Models: a tanh MLP (64-100-100-10) and a small ReLU CNN on 1,000 digits images, cross-entropy,
trained for a while (float32, as in training). Exact references come from all P Hessian columns in
float64 (lambda_max by Lanczos to residual 1e-10; trace and Frobenius norm summed over the columns).

Rows (`results/bench/summary.csv`, ratio = ours / reference):
- `sharpness/lmax_time_vs_pyhessian/<m>`: a cold lambda_max (tol 1e-3) vs PyHessian's
  `hessian(...)` + `eigenvalues()` (its defaults: maxIter 100, tol 1e-3), interleaved; target <= 0.5.
- `sharpness/lmax_error/<m>`: our max relative error over seeds vs the 1e-4 target (<= 1), and
  `sharpness/lmax_error_vs_pyhessian/<m>`: ours vs PyHessian's max error.
- `sharpness/lmax_time_vs_pyhessian_tol1e-6/<m>`: the same at (about) equal accuracy, PyHessian's
  tolerance tightened to 1e-6.
- `sharpness/lmax_warm_hvps/<m>`: the most products a warm-started call took during training
  (hook every 10 SGD steps) vs the target 8.
- `sharpness/trace_max_error/<m>`: max trace error over seeds of the default estimator vs 2 %.
- `sharpness/trace_hvps_vs_hutchinson/<m>`: our products vs the products plain Hutchinson needs for
  the same max error over the same number of seeds (from its exact per-probe variance
  2(||H||_F^2 - sum H_ii^2) and the expected maximum of |N(0,1)| over the seeds); target <= 0.2.
- `sharpness/trace_time_vs_pyhessian/<m>` and `sharpness/trace_error_vs_pyhessian/<m>`.
- `sharpness/hvp_cost/<m>` (and `hvp_cost_jvp`): one product vs one forward+backward of the batch.
PyHessian (GPL-3, `pip install -e .[bench]`) runs on a deep copy in isolation: it writes `.grad`
and leaves the model in eval mode. If it is missing, its rows are skipped with a printed note.

curvlinops-for-pytorch (MIT, maintained; the `bench` extra) as the second reference, same model and batch:
- `sharpness/lmax_time_vs_curvlinops/<m>`: a cold lambda_max (ours, tol 1e-3) vs its
  `HessianLinearOperator(...).to_scipy()` + scipy `eigsh(k=1, which="LA")` at `tol` = our max error (equal
  accuracy), interleaved; `sharpness/lmax_error_vs_curvlinops/<m>` the two max errors.
- `sharpness/trace_hvps_vs_curvlinops_{hutchpp,hutchinson}/<m>`: our products (deflated Hutchinson) vs
  the products its `hutchpp_trace` / `hutchinson_trace` need for our max trace error, extrapolated from
  their max error over the seeds at our budget (Hutch++ error ~ 1/m, Hutchinson ~ 1/sqrt(m)).

The tracking mode (`track=true`, lambda_max every step) on full engine runs at every=1 (with `--track`, or
in `--quick` form at 100 steps; the full rows take several minutes):
- `sharpness/track_hvps/<setting>`: mean products per step (first, cold call excluded) vs the target 3;
- `sharpness/track_max_error/<setting>`: max relative error against a cold solve every 20 steps
  (Lanczos to residual 1e-5) vs the target 1e-3 (300 stability_gap steps, 600 EoS steps);
- `sharpness/track_overhead/<setting>`: the whole run with the tracking hook (no checks) vs training
  alone, interleaved, target <= 3. Settings: `stability_gap` (its smoke scale: split digits, MLP
  64-256-256-10, SGD+momentum, batch 64, probe 1,000 samples) and `eos` (sgd_stability=eos: full-batch
  GD, tanh MLP 100-100, MSE on 898 digits, lr 0.7: lambda_max rises to 2/lr within ~350 steps).
"""
from __future__ import annotations

import copy
import hashlib
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from runner.bench import interleaved, note, paired_ratio, record
from runner.curvature.estimators import lanczos
from runner.curvature.hvp import HessianOperator, probe_mode
from runner.data import load
from runner.data.cache import cached
from runner.hooks.sharpness import Sharpness
from runner.models.cnn import CNN
from runner.trainers.supervised import loss_fn

CE = lambda out, y: loss_fn("ce", out, y)  # noqa: E731
MODELS = {
    "mlp": lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 100), nn.Tanh(), nn.Linear(100, 100), nn.Tanh(),
                                 nn.Linear(100, 10)),
    "cnn": lambda: CNN((1, 8, 8), 10, channels=[8, 16], hidden=64),
}
# `make bench` runs the MLP only: the CNN's exact reference (every Hessian column, ~67k products) takes
# longer than the whole 10-minute bench budget; run it on its own with run(models=("mlp", "cnn")).
DEFAULT_MODELS = ("mlp",)
QUICK = {"mlp_small": lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))}


def problem(name: str, n: int = 1000, steps: int = 300):
    torch.manual_seed(0)
    d = load("digits", seed=0)
    x, y = d.x_train[:n], d.y_train[:n]
    model = {**MODELS, **QUICK}[name]()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        CE(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model, x, y


def _exact(model, x, y, block: int = 64) -> dict:
    """lambda_max, trace, ||H||_F and sum H_ii^2 in float64 from all Hessian columns."""
    m64, x64 = copy.deepcopy(model).double(), x.double()
    with probe_mode(m64):
        op = HessianOperator(m64, CE, x64, y, vector_batch=1)  # batched (vmap) conv double backward is slow on CPU
        tr = fro2 = diag2 = 0.0
        for i in range(0, op.dim, block):
            eye = torch.zeros(min(block, op.dim - i), op.dim, dtype=torch.float64)
            eye[torch.arange(len(eye)), torch.arange(i, i + len(eye))] = 1.0
            cols = op(eye)
            d = cols[torch.arange(len(eye)), torch.arange(i, i + len(eye))]
            tr, fro2, diag2 = tr + float(d.sum()), fro2 + float((cols * cols).sum()), diag2 + float((d * d).sum())
        g = torch.Generator().manual_seed(123)
        res = lanczos(op, torch.randn(op.dim, generator=g, dtype=torch.float64), tol=1e-10, max_iter=300)
    return {"lmax": float(res.values[0]), "trace": tr, "fro": math.sqrt(fro2), "diag2": diag2, "dim": op.dim}


def exact(model, x, y) -> dict:
    """`_exact`, kept on disk (runner.data.cache, `$OPTRUN_CACHE`) under a hash of the weights and the batch:
    the 17,610 columns of the MLP's Hessian take ~2.5 minutes on 2 cores (vmap-batched columns were slower
    still, 4.4 min), a quarter of make bench; every run after the first reads the five numbers."""
    blob = b"".join(t.detach().double().cpu().numpy().tobytes() for t in (*model.parameters(), x, y.double()))
    key = {"sha256": hashlib.sha256(blob).hexdigest()}

    def make():
        return {k: torch.tensor(float(v), dtype=torch.float64) for k, v in _exact(model, x, y).items()}
    ref, info = cached("bench-sharpness-exact-hessian", key, make)
    how = f"read from {info['path']}" if info["hit"] else f"computed in {info['seconds']:.0f} s and cached"
    note(f"sharpness: the exact Hessian reference (all columns, float64) was {how}")
    out = {k: float(v) for k, v in ref.items()}
    out["dim"] = int(out["dim"])
    return out


def fwd_bwd_time(model, x, y, repeats: int) -> float:
    def step():
        model.zero_grad(set_to_none=True)
        CE(model(x), y).backward()
    step()
    t = time.perf_counter()
    for _ in range(repeats):
        step()
    model.zero_grad(set_to_none=True)
    return (time.perf_counter() - t) / repeats


def hvp_time(model, x, y, mode: str, repeats: int) -> float:
    with probe_mode(model):
        op = HessianOperator(model, CE, x, y, hvp=mode)
        v = torch.randn(op.dim)
        op(v)
        t = time.perf_counter()
        for _ in range(repeats):
            op(v)
        return (time.perf_counter() - t) / repeats


def ours_lmax(model, x, y, seed: int) -> tuple[float, int]:
    hook = Sharpness(estimator="none", warm_start=False)
    hook.generator = torch.Generator().manual_seed(seed)
    m = hook.measure(model, x, y, CE)
    return m["lambda_max"], m["lanczos_hvps"]


def ours_trace(model, x, y, seed: int) -> tuple[float, int]:
    hook = Sharpness(warm_start=False)
    hook.generator = torch.Generator().manual_seed(seed)
    m = hook.measure(model, x, y, CE)
    return m["trace"], m["curvature_hvps"]


def pyhessian_calls():
    """(eigenvalue(model, x, y, seed), trace(model, x, y, seed)) with product counting, or None."""
    try:
        import importlib

        ph = importlib.import_module("pyhessian.hessian")  # the module (the package re-exports a class of that name)
    except ImportError:
        return None
    count = {"n": 0}
    inner = ph.hessian_vector_product

    def counting(gradsH, params, v):
        count["n"] += 1
        return inner(gradsH, params, v)

    ph.hessian_vector_product = counting

    def eig(model, x, y, seed, tol=1e-3):
        torch.manual_seed(seed)
        count["n"] = 0
        h = ph.hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        return h.eigenvalues(tol=tol)[0][0], count["n"]

    def trace(model, x, y, seed):
        torch.manual_seed(seed)
        count["n"] = 0
        h = ph.hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        samples = h.trace()
        return float(statistics.mean(samples)), count["n"]

    return eig, trace


def expected_max_abs_normal(k: int, draws: int = 20000) -> float:
    g = torch.Generator().manual_seed(0)
    return float(torch.randn(draws, k, generator=g, dtype=torch.float64).abs().max(1).values.mean())


def warm_hvps(steps: int) -> list[int]:
    """Products per warm-started call in a real training run (hook every 10 SGD steps, MLP, digits)."""
    import pandas as pd

    from runner import experiments
    from runner.dispatch import build
    from runner.engine import Engine
    from runner.results import MetricsWriter

    cfg = experiments.compose(["progress=false", "device=cpu", f"trainer.steps={steps}",
                               "model.hidden=[100,100]", "model.activation=tanh", "hooks=[sharpness]",
                               "hooks.sharpness.every=10", "hooks.sharpness.estimator=none"])
    state, trainer, hooks = build(cfg)
    out = Path(tempfile.mkdtemp(prefix="bench-sharpness-")) / "metrics.csv"
    Engine(trainer, hooks, MetricsWriter(out), progress=False).run(state)
    return pd.read_csv(out)["sharpness/lanczos_hvps"].dropna().astype(int).tolist()[1:]  # the first call is cold


def curvlinops_calls():
    """(lmax(model, x, y, tol), trace(model, x, y, seed, n, method)) with product counting, or None."""
    try:
        import curvlinops
        from scipy.sparse.linalg import eigsh
    except ImportError:
        return None
    count = {"n": 0}

    def operator(model, x, y):
        params = [p for p in model.parameters() if p.requires_grad]
        op = curvlinops.HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [(x, y)],
                                              check_deterministic=False)
        inner = op._matmat

        def counting(X):
            count["n"] += X[0].shape[-1]
            return inner(X)

        op._matmat = counting
        return op

    def lmax(model, x, y, tol):
        count["n"] = 0
        m = copy.deepcopy(model).eval()
        val = eigsh(operator(m, x, y).to_scipy(), k=1, which="LA", tol=tol, return_eigenvectors=False)
        return float(val[0]), count["n"]

    def trace(model, x, y, seed, n, method="hutchpp"):
        count["n"] = 0
        torch.manual_seed(seed)
        m = copy.deepcopy(model).eval()
        fn = curvlinops.hutchpp_trace if method == "hutchpp" else curvlinops.hutchinson_trace
        return float(fn(operator(m, x, y), n)), count["n"]

    from importlib.metadata import version

    return lmax, trace, version("curvlinops-for-pytorch")


def curvlinops_rows(name, model, x, y, ref, lmax_err, trace_err, n_trace, seeds, reps, cl) -> None:
    lmax_cl, trace_cl, version = cl
    tol = max(lmax_err, 1e-12)  # eigsh's relative eigenvalue tolerance = our max error: equal accuracy
    theirs = [lmax_cl(model, x, y, tol) for _ in range(2)]
    cerr = max(abs(v - ref["lmax"]) / ref["lmax"] for v, _ in theirs)
    record(f"sharpness/lmax_error_vs_curvlinops/{name}", lmax_err, cerr, "max rel. error")
    ta, tb, ra, rb = interleaved(lambda: ours_lmax(model, x, y, 0), lambda: lmax_cl(model, x, y, tol),
                                 repeats=max(reps // 4, 3))
    record(f"sharpness/lmax_time_vs_curvlinops/{name}", ta, tb, "s", "<=0.5", ratio=paired_ratio(ra, rb),
           raw={"ours_s": ra, "curvlinops_s": rb, "curvlinops": version, "eigsh_tol": tol,
                "curvlinops_products": theirs[0][1]})
    print(f"  lambda_max curvlinops {version} eigsh(tol={tol:.1e}): max rel err {cerr:.2e}, products "
          f"{theirs[0][1]}; time ours {ta:.4f}s vs {tb:.4f}s")
    for method, power in (("hutchpp", 1), ("hutchinson", 2)):
        vals = [trace_cl(model, x, y, s, n_trace, method) for s in range(seeds)]
        err = max(abs(v - ref["trace"]) / ref["trace"] for v, _ in vals)
        need = math.ceil(n_trace * (err / max(trace_err, 1e-12)) ** power)
        record(f"sharpness/trace_hvps_vs_curvlinops_{method}/{name}", n_trace, need, "products", "<=1",
               raw={"curvlinops_max_error_at_our_budget": err, "our_max_error": trace_err})
        print(f"  trace curvlinops {method} with {n_trace} products: max rel err {err:.2%} "
              f"(ours {trace_err:.2%}); it needs ~{need} for ours")


TRACK_SETTINGS = {
    "stability_gap": ["experiment=stability_gap"],
    "eos": ["experiment=sgd_stability", "sgd_stability=eos"],
}


def track_run(setting: str, hook: bool, check_every: int = 0, steps: int | None = None):
    """One engine run of `setting` with (or without) the tracking hook at every step; (metrics, wall s)."""
    import pandas as pd

    from runner import experiments
    from runner.dispatch import build
    from runner.engine import Engine
    from runner.results import MetricsWriter

    ov = ["progress=false", "device=cpu", "threads=1"]
    if steps is not None:
        ov.append(f"trainer.steps={steps}" if setting == "eos" else f"trainer.iters_per_task={steps // 5}")
    if hook:
        ov += ["hooks=[sharpness]", "hooks.sharpness.every=1", "hooks.sharpness.estimator=none",
               "hooks.sharpness.track=true", f"hooks.sharpness.check_every={check_every}"]
    else:
        ov.append("hooks=[]")
    state, trainer, hooks = build(experiments.compose(TRACK_SETTINGS[setting] + ov))
    out = Path(tempfile.mkdtemp(prefix="bench-track-")) / "metrics.csv"
    t = time.perf_counter()
    Engine(trainer, hooks, MetricsWriter(out), progress=False).run(state)
    wall = time.perf_counter() - t
    return pd.read_csv(out), wall


def track_rows(quick: bool) -> None:
    # sized for make bench's 10 minutes per file: 300 stability_gap steps (60 per task), 600 EoS steps (EoS from
    # ~350 on); the full runs (500 / 1000 steps, a check every 10) took 376 s for this section on 2 busy cores
    for setting in TRACK_SETTINGS:
        steps = 100 if quick else {"stability_gap": 300, "eos": 600}[setting]
        df, _ = track_run(setting, True, check_every=5 if quick else 20, steps=steps)
        hv = df["sharpness/lanczos_hvps"].dropna().tolist()[1:]
        err = df["sharpness/lambda_rel_error"].dropna()
        lam = df["sharpness/lambda_max"].dropna()
        record(f"sharpness/track_hvps/{setting}", statistics.mean(hv), 3, "products per step", "<=1",
               raw={"p50": statistics.median(hv), "max": max(hv), "steps": len(hv)})
        record(f"sharpness/track_max_error/{setting}", float(err.max()), 1e-3, "max rel. error", "<=1",
               raw={"checks": len(err), "mean": float(err.mean()), "lambda_max_range": [lam.min(), lam.max()]})
        print(f"bench_sharpness[track/{setting}]: {len(hv)} steps, products mean {statistics.mean(hv):.2f} "
              f"(median {statistics.median(hv)}, max {max(hv)}), max rel err {err.max():.2e} over {len(err)} checks, "
              f"lambda_max {lam.min():.3g}..{lam.max():.3g}")
        # whole run with the hook (no checks) vs training alone, interleaved; shorter runs (the ratio is per step)
        n = 50 if quick else 100  # one round of 100 steps: the ratio (8x-70x) needs no second round
        rounds = 1
        ra, rb = [], []
        for _ in range(rounds):
            ra.append(track_run(setting, True, steps=n)[1])
            rb.append(track_run(setting, False, steps=n)[1])
        record(f"sharpness/track_overhead/{setting}", statistics.median(ra), statistics.median(rb), "s", "<=3",
               ratio=paired_ratio(ra, rb), raw={"with_hook_s": ra, "training_s": rb, "steps": n,
                                                "note": "shared machine: noisy"})
        print(f"  whole run ({n} steps) with tracking {statistics.median(ra):.1f}s vs training alone "
              f"{statistics.median(rb):.1f}s: {paired_ratio(ra, rb):.2f}x")


def run(quick: bool = False, models: tuple[str, ...] | None = None, warm: bool = True, track: bool = True) -> None:
    seeds = 3 if quick else 5  # make bench's 10 minutes: 5 seeds and 10 repeats (were 10 and 20)
    reps = 5 if quick else 10
    ph = pyhessian_calls()
    cl = curvlinops_calls()
    if cl is None:
        note("curvlinops-for-pytorch is not installed (pip install -e .[bench]): its rows are skipped")
    if ph is None:
        print("bench_sharpness: PyHessian is not installed (pip install -e .[bench]); its rows are skipped")
    for name in models or (list(QUICK) if quick else list(DEFAULT_MODELS)):
        model, x, y = problem(name)
        ref = exact(model, x, y)
        print(f"bench_sharpness[{name}]: P={ref['dim']} lambda_max={ref['lmax']:.6g} tr={ref['trace']:.6g} "
              f"||H||_F={ref['fro']:.6g}")
        # lambda_max: accuracy and time against PyHessian's power iteration
        ours = [ours_lmax(model, x, y, s) for s in range(seeds)]
        err = max(abs(v - ref["lmax"]) / ref["lmax"] for v, _ in ours)
        record(f"sharpness/lmax_error/{name}", err, 1e-4, "max rel. error", "<=1")
        print(f"  lambda_max ours: max rel err {err:.2e}, products {statistics.mean(n for _, n in ours):.1f}")
        if ph is not None:
            eig, trace = ph
            theirs = [eig(model, x, y, s) for s in range(seeds)]
            perr = max(abs(v - ref["lmax"]) / ref["lmax"] for v, _ in theirs)
            record(f"sharpness/lmax_error_vs_pyhessian/{name}", err, perr, "max rel. error", "<=1")
            ta, tb, _, _ = interleaved(lambda: ours_lmax(model, x, y, 0), lambda: eig(model, x, y, 0), repeats=reps)
            record(f"sharpness/lmax_time_vs_pyhessian/{name}", ta, tb, "s", "<=0.5")
            print(f"  lambda_max PyHessian: max rel err {perr:.2e}, products "
                  f"{statistics.mean(n for _, n in theirs):.1f}; time ours {ta:.4f}s vs {tb:.4f}s")
            # equal accuracy: PyHessian's tolerance tightened until its error is as small as ours
            tight = [eig(model, x, y, s, tol=1e-6) for s in range(min(seeds, 3))]
            terr_ph = max(abs(v - ref["lmax"]) / ref["lmax"] for v, _ in tight)
            ta, tb, _, _ = interleaved(lambda: ours_lmax(model, x, y, 0), lambda: eig(model, x, y, 0, tol=1e-6),
                                       repeats=max(reps // 4, 3))
            record(f"sharpness/lmax_time_vs_pyhessian_tol1e-6/{name}", ta, tb, "s", "<=0.5")
            print(f"  lambda_max PyHessian tol 1e-6: max rel err {terr_ph:.2e}, products "
                  f"{statistics.mean(n for _, n in tight):.1f}; time ours {ta:.4f}s vs {tb:.4f}s")
        # trace: our default estimator against plain Hutchinson's needs and PyHessian's trace()
        tr = [ours_trace(model, x, y, s) for s in range(seeds)]
        terr = max(abs(v - ref["trace"]) / ref["trace"] for v, _ in tr)
        n_ours = tr[0][1]
        record(f"sharpness/trace_max_error/{name}", terr, 0.02, "max rel. error", "<=1")
        sigma = math.sqrt(2 * (ref["fro"] ** 2 - ref["diag2"]))  # one Rademacher probe's standard deviation
        c = expected_max_abs_normal(seeds)
        need = math.ceil((c * sigma / (max(terr, 1e-12) * ref["trace"])) ** 2)
        record(f"sharpness/trace_hvps_vs_hutchinson/{name}", n_ours, need, "products", "<=0.2")
        print(f"  trace ours: max rel err {terr:.2%} with {n_ours} products; plain Hutchinson needs ~{need}")
        if ph is not None:
            _, trace = ph
            theirs = [trace(model, x, y, s) for s in range(seeds)]
            perr = max(abs(v - ref["trace"]) / ref["trace"] for v, _ in theirs)
            record(f"sharpness/trace_error_vs_pyhessian/{name}", terr, perr, "max rel. error", "<=1")
            ta, tb, _, _ = interleaved(lambda: ours_trace(model, x, y, 0), lambda: trace(model, x, y, 0),
                                       repeats=max(reps // 4, 3))
            record(f"sharpness/trace_time_vs_pyhessian/{name}", ta, tb, "s")
            print(f"  trace PyHessian: max rel err {perr:.2%}, products {statistics.mean(n for _, n in theirs):.1f}; "
                  f"time ours {ta:.3f}s vs {tb:.3f}s")
        if cl is not None:
            curvlinops_rows(name, model, x, y, ref, err, terr, n_ours, seeds, reps, cl)
        # one product against one forward+backward on the same batch
        fb = fwd_bwd_time(model, x, y, reps)
        for mode in ("graph", "jvp"):
            h = hvp_time(model, x, y, mode, reps)
            record(f"sharpness/hvp_cost{'' if mode == 'graph' else '_jvp'}/{name}", h, fb, "s", "<=1.5")
            print(f"  one product ({mode}) = {h / fb:.2f} forward+backward")
    if warm:
        hv = warm_hvps(200 if quick else 1000)
        record("sharpness/lmax_warm_hvps/mlp_digits_sgd", max(hv), 8, "products", "<=1")
        print(f"  warm-started calls during training: mean {statistics.mean(hv):.1f}, max {max(hv)} products")
    if track:
        track_rows(quick)


if __name__ == "__main__":
    import sys

    # the tracking rows take several minutes at full size: `make bench` runs them in --quick form only;
    # `python -m bench.bench_sharpness --track` runs them at the sizes above
    quick = "--quick" in sys.argv
    run(quick=quick, track=quick or "--track" in sys.argv)
