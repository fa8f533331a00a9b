"""Sharpness of the training loss: lambda_max, tr(H), ||H||_F and the stability ratios they feed.

On a fixed probe subset of the training data (seeded, chosen once; the whole set when it is
smaller than `probe_samples`), with the trainer's own loss (`state.trainer.criterion`), at the
current parameters:

- `lambda_max` by Lanczos on Hessian-vector products, warm-started from the previous call's top
  eigenvector, stopping when the Ritz residual is below `tol * lambda_max` (`lanczos_hvps` logs how
  many products that took); `lambda_2..lambda_k` when `top_k > 1`.
- `trace` and `frobenius` with standard errors `trace_se`, `frobenius_se`, by Rademacher probes on
  the part of H the Lanczos basis leaves out (`estimator: lanczos`, the default: the basis is run to
  `deflate` vectors and its projection is exact), or by Hutch++ / plain Hutchinson with a budget of
  `probes` products. `estimator: none` logs lambda_max only. `curvature_hvps` counts every product.
- the thresholds the stability papers compare against, with eta = `state.lr` (the step size the
  optimizer uses next): `lr`, `two_over_lr`, `gd_ratio` = eta*lambda_max/2 (GD is linearly stable
  at a minimum only if <= 1), `trace_ratio` = eta*tr(H)/2 (SGD with batch size 1: Wu & Su 2023,
  tr(H) <= 2/eta), and `sgd_ratio` = p_B*eta*tr(H)/2 with p_B = (n-B)/(B(n-1)), the batch-size
  dependent version: for B = 1 it is the paper's condition, for full batch it constrains nothing.
  (p_B weights the single-sample step in the mixture that has the same mean-square stability as
  B-batch SGD, Mulayoff & Michaeli 2023. For B > 1 this is our derivation, a necessary condition
  for mean-square stability when the per-sample Hessians are rank one with equal traces; the
  paper's own batch-size dependence was not verified.)

Tracking mode (`track: true`, for `every: 1`): lambda_max follows the top eigenpair from step to step
(`runner.curvature.estimators.track_top`). Each call does Rayleigh-Ritz on the last call's top
`track_block` Ritz vectors (default 2: at the edge of stability the top two eigenvalues cross often, and
a single vector would follow its eigenvector, now the second, with a small residual that no test can
flag), plus the update theta_t - theta_{t-1} (the hook keeps the last parameters; `track_update`: at the
start, when the first test fails, or never), then Lanczos continuation only while the quadratic bound
  0 <= lambda_max - theta <= ||R||^2 / (theta_k - lambda_{k+1})   (Kato-Temple; k = track_block)
is above `tol * theta`. lambda_{k+1} is estimated by a warm Lanczos for the top k+1 pairs every
`gap_every` calls (counted in `lanczos_hvps`), and by the subspace's own next Ritz value in between; the
gap is shrunk by `gap_safety`, and without a usable gap the plain residual ||r_1|| is the bound.
`lambda_bound` logs the bound used. The estimate of lambda_{k+1} is a Ritz value (a lower bound), so the
bound is an estimate too, not a certificate: `check_every: k` runs a cold Lanczos (random start, residual
`check_tol`) every k calls and logs `lambda_max_exact` and `lambda_rel_error` (its products are not
counted). The bound also cannot see an eigenvalue from outside the tracked subspace overtaking the top
ones between refreshes; the checks are how a run finds out. tr(H) and ||H||_F stay every-k estimates in
this mode: every `trace_every` calls (a full warm Lanczos of `deflate` vectors plus `probes` products).
Products per step and the accuracy reached on the stability_gap and edge-of-stability settings are in
`bench/bench_sharpness.py` (`sharpness/track_*` rows).

Error bars of tr(H) and ||H||_F: `trace_se` / `frobenius_se` are the standard errors of the sampled
part (the residual probes), conditional on the deflation basis; trace +- 2 trace_se is an approximate
95 % interval for the probe-set Hessian's trace at that step (normal approximation over `probes`
Rademacher probes; for `estimator: lanczos` the exact part tr(T) carries no sampling error, so the
interval shrinks with the part of the spectrum the basis misses). It does not cover the change of tr(H)
between two estimates (every `trace_every` calls in tracking mode, every `every` steps otherwise), nor
the probe subset's difference from the whole training set. The bench reports the realised max error
over seeds against the exact trace (`sharpness/trace_max_error`, target 2 %).

The hook never changes training: dropout off, BatchNorm per `batchnorm` without touching its
buffers, no `.grad` writes, train/eval flags restored, random numbers from its own stream. Momentum
changes the GD/SGD thresholds; the ratios assume plain (S)GD.

Reuse outside the engine or in another probe:

    Sharpness(estimator="none").measure(model, x, y, criterion)["lambda_max"]  # warm-starts next call
    with probe_mode(model):
        op = HessianOperator(model, loss, x, y)   # runner.curvature.hvp
        g = op.gradient(); hg = op(g)             # ||g||, ||H g|| from one graph

and `runner.curvature.estimators` (`lanczos`, `lanczos_deflated`, `hutchpp`, `trace_frobenius`)
on any symmetric `matvec`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from runner.curvature.estimators import hutchpp, lanczos, lanczos_deflated, trace_frobenius, track_top
from runner.curvature.hvp import BATCHNORM_MODES, HVP_MODES, HessianOperator, flat_params, probe_mode
from runner.errors import OptrunError
from runner.hooks.base import Hook

ESTIMATORS = ("lanczos", "hutchpp", "hutchinson", "none")
TRACK_UPDATE = ("start", "fail", "off")


def sgd_noise_weight(n: int, batch_size: int | None) -> float:
    """p_B = (n - B) / (B (n - 1)): 1 for B = 1, 0 for full batch (sampling without replacement)."""
    b = n if batch_size is None else min(int(batch_size), n)
    return (n - b) / (b * (n - 1)) if n > 1 else 0.0


class Sharpness(Hook):
    name = "sharpness"
    needs_objective = True

    def __init__(self, every: int = 100, at_start: bool = True, at_phase_end: bool = True, at_end: bool = True,
                 log_points: int = 0, batch_size: int | None = None,
                 probe_samples: int | None = 1000, tol: float = 1e-3, max_iter: int = 100, top_k: int = 1,
                 warm_start: bool = True, estimator: str = "lanczos", probes: int = 40, deflate: int = 20,
                 hvp: str = "graph", vector_batch: int | None = None, chunk_size: int | None = None,
                 batchnorm: str = "eval", track: bool = False, track_update: str = "off", track_block: int = 2,
                 gap_every: int = 100, gap_safety: float = 0.5, track_max_iter: int = 30, trace_every: int = 100,
                 check_every: int = 0, check_tol: float = 1e-5):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        key = f"hooks.{self.name}"
        checks = [(estimator in ESTIMATORS, "estimator", f"one of {', '.join(ESTIMATORS)}", estimator),
                  (hvp in HVP_MODES, "hvp", f"one of {', '.join(HVP_MODES)}", hvp),
                  (batchnorm in BATCHNORM_MODES, "batchnorm", f"one of {', '.join(BATCHNORM_MODES)}", batchnorm),
                  (0 < tol < 1, "tol", "a number in (0, 1)", tol),
                  (top_k >= 1 and max_iter >= top_k, "top_k", "1 <= top_k <= max_iter", top_k),
                  (probes >= 2 or estimator == "none", "probes", "an integer >= 2", probes),
                  (probe_samples is None or probe_samples > 0, "probe_samples", "a positive integer or null",
                   probe_samples),
                  (log_points >= 0, "log_points", "an integer >= 0", log_points),
                  (track_update in TRACK_UPDATE, "track_update", f"one of {', '.join(TRACK_UPDATE)}", track_update),
                  (not track or top_k == 1, "top_k", "1 with track=true (the tracker follows the top pair)", top_k),
                  (track_block >= 1, "track_block", "an integer >= 1", track_block),
                  (gap_every >= 1, "gap_every", "an integer >= 1", gap_every),
                  (0 < gap_safety <= 1, "gap_safety", "a number in (0, 1]", gap_safety),
                  (track_max_iter >= 2, "track_max_iter", "an integer >= 2", track_max_iter),
                  (trace_every >= 1, "trace_every", "an integer >= 1", trace_every),
                  (check_every >= 0, "check_every", "an integer >= 0 (0: no checks)", check_every),
                  (0 < check_tol < 1, "check_tol", "a number in (0, 1)", check_tol)]
        for ok, k, expected, got in checks:
            if not ok:
                raise OptrunError(f"{key}.{k}: expected {expected}, got {got!r}")
        self.batch_size, self.probe_samples = batch_size, probe_samples
        self.tol, self.max_iter, self.top_k, self.warm_start = tol, max_iter, top_k, warm_start
        self.estimator, self.probes, self.deflate = estimator, probes, deflate
        self.hvp, self.vector_batch, self.chunk_size, self.batchnorm = hvp, vector_batch, chunk_size, batchnorm
        self.log_points = log_points
        self.track, self.track_update, self.gap_every, self.gap_safety = track, track_update, gap_every, gap_safety
        self.track_max_iter, self.trace_every, self.check_every, self.check_tol = (track_max_iter, trace_every,
                                                                                   check_every, check_tol)
        self.track_block = track_block
        self.v_block: torch.Tensor | None = None  # the tracked top-k Ritz vectors (tracking mode)
        self.calls = 0  # measurements so far (the tracking mode's schedule of gap refreshes, traces, checks)
        self.lambda_next: float | None = None  # lambda_{k+1} from the last refresh (tracking mode, k = track_block)
        self.gap_at = -1  # the call that refreshed it
        self.params_prev: torch.Tensor | None = None  # parameters at the last call (the update direction)
        self.log_steps: set[int] = set()
        self.v_prev: torch.Tensor | None = None
        self.seed = 0
        self.generator: torch.Generator | None = None
        self._probe: dict = {}

    # -- schedule: every k steps, and/or `log_points` log-spaced steps over the run, and events
    def due(self, step: int, **event) -> bool:
        return super().due(step, **event) or (not event.get("start") and step in self.log_steps)

    def setup(self, state) -> None:
        if state.model is None:
            raise OptrunError("hooks=sharpness needs a model (this run has model=none)")
        if self.log_points and state.total_steps:
            pts = np.geomspace(1, state.total_steps, self.log_points)
            self.log_steps = {int(round(p)) for p in pts}
        g = self.stream(state)
        self.seed = int(torch.randint(0, 2**62, (1,), generator=g, device=g.device))
        self.generator = torch.Generator(device=state.device)
        self.generator.manual_seed(self.seed)
        self._probe = {}

    def columns(self, state) -> list[str]:
        out = ["lambda_max", "lanczos_hvps", *(f"lambda_{i}" for i in range(2, self.top_k + 1))]
        if self.track:
            out.append("lambda_bound")
        if self.check_every:
            out += ["lambda_max_exact", "lambda_rel_error"]
        if self.estimator != "none":
            out += ["trace", "trace_se", "frobenius", "frobenius_se"]
        out.append("curvature_hvps")
        if state.optimizer is not None:
            out += ["lr", "two_over_lr", "gd_ratio"] + (["trace_ratio", "sgd_ratio"] if self.estimator != "none" else [])
        return out

    def probe_batch(self, state) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The fixed probe subset for the current task (drawn once) and the training-set size n."""
        key = state.task
        if key not in self._probe:
            x, y = state.trainer.probe_data(state, "train")
            n = len(y)
            if self.probe_samples is not None and n > self.probe_samples:
                # a generator of its own per task: the subset does not depend on the probes drawn before (resume)
                g = torch.Generator().manual_seed((self.seed + 7919 * (key or 0)) % 2**63)
                idx = torch.randperm(n, generator=g)[: self.probe_samples].sort().values.to(y.device)
                x, y = x[idx], y[idx]
            self._probe[key] = (x, y, n)
        return self._probe[key]

    def _start_vector(self, dim: int, dtype, device) -> torch.Tensor:
        if self.warm_start and self.v_prev is not None and self.v_prev.numel() == dim:
            return self.v_prev.to(device=device, dtype=dtype)
        return torch.randn(dim, generator=self.generator, device=self.generator.device).to(device=device, dtype=dtype)

    def measure(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, criterion) -> dict:
        """Curvature metrics of `model` on (x, y) under `criterion(output, target)`; updates the warm
        start. Usable without a state."""
        if self.generator is None:  # used outside the engine: a fixed default stream
            self.generator = torch.Generator(device=x.device)
            self.generator.manual_seed(0)
        call, self.calls = self.calls, self.calls + 1
        with probe_mode(model, self.batchnorm):
            op = HessianOperator(model, criterion, x, y, hvp=self.hvp,
                                 chunk_size=self.chunk_size, vector_batch=self.vector_batch)
            trace_due = self.estimator != "none" and (not self.track or call % self.trace_every == 0)
            warm = self.warm_start and self.v_prev is not None and self.v_prev.numel() == op.dim
            refresh = (not warm or trace_due or self.lambda_next is None or self.v_block is None
                       or self.v_block.shape[-1] != op.dim or call - self.gap_at >= self.gap_every)
            params = flat_params(model) if self.track else None
            if self.track and not refresh:
                out = self._track(op, params)
                res = None
            else:  # Lanczos (warm-started); the tracking mode also refreshes its lambda_2 estimate here
                min_iter = self.deflate if trace_due and self.estimator == "lanczos" else 1
                k = self.track_block + 1 if self.track else self.top_k
                res = lanczos(op, self._start_vector(op.dim, op.dtype, op.device), k=k, tol=self.tol,
                              max_iter=max(self.max_iter, min_iter), min_iter=min_iter)
                out = {"lambda_max": float(res.values[0]), "lanczos_hvps": res.converged_at}
                if self.track:
                    out["lambda_bound"] = float(res.residuals[0])
                    kb = min(self.track_block, len(res.values))
                    self.v_block = res.vectors[:kb].detach()
                    self.lambda_next = float(res.values[kb]) if len(res.values) > kb else None
                    self.gap_at = call
                else:
                    out.update({f"lambda_{i + 1}": float(v) for i, v in enumerate(res.values[1:], start=1)})
                self.v_prev = res.vectors[0].detach()
            opts = dict(dtype=op.dtype, device=op.device)
            est = None
            if trace_due and self.estimator == "lanczos":
                est = lanczos_deflated(op, res, self.probes, self.generator, **opts)
            elif trace_due and self.estimator == "hutchpp":
                est = hutchpp(op, op.dim, self.probes, self.generator, **opts)
            elif trace_due and self.estimator == "hutchinson":
                est = trace_frobenius(op, op.dim, self.probes, self.generator, **opts)
            if est is not None:
                out.update(trace=est.trace, trace_se=est.trace_se, frobenius=est.frobenius,
                           frobenius_se=est.frobenius_se)
            out["curvature_hvps"] = op.n_matvec
            if self.check_every and call % self.check_every == 0:
                out.update(self._check(op, out["lambda_max"]))
            op.release()
        self.params_prev = params
        return out

    def _track(self, op: HessianOperator, params: torch.Tensor) -> dict:
        """One tracking step: Rayleigh-Ritz on the last eigenvector (and the update direction), Lanczos
        continuation only while the Kato-Temple bound is above tol * lambda_max."""
        extra = ()
        if self.params_prev is not None and self.params_prev.shape == params.shape:
            d = params - self.params_prev
            if float(d.norm()) > 0:
                extra = (d.to(op.dtype),)
        res = track_top(op, self.v_block.to(device=op.device, dtype=op.dtype), extra=extra, tol=self.tol,
                        lambda_next=self.lambda_next, gap_safety=self.gap_safety, max_iter=self.track_max_iter,
                        update=self.track_update)
        self.v_prev, self.v_block = res.vector.detach(), res.vectors.detach()
        return {"lambda_max": res.value, "lanczos_hvps": res.n_matvec, "lambda_bound": res.bound}

    def _check(self, op: HessianOperator, value: float) -> dict:
        """A cold solve (random start from a stream of its own, Lanczos to residual `check_tol * lambda`,
        so its error is below that) to compare the logged lambda_max with; its products are not counted
        in `lanczos_hvps` / `curvature_hvps`, and it changes nothing the hook measures later."""
        g = torch.Generator(device=self.generator.device).manual_seed((self.seed + 104729 * self.calls) % 2**63)
        v0 = torch.randn(op.dim, generator=g, device=g.device).to(device=op.device, dtype=op.dtype)
        n0 = op.n_matvec
        ref = lanczos(op, v0, tol=self.check_tol, max_iter=max(self.max_iter, 300))
        op.n_matvec = n0
        exact = float(ref.values[0])
        return {"lambda_max_exact": exact, "lambda_rel_error": abs(value - exact) / max(abs(exact), 1e-30)}

    def __call__(self, state) -> dict:
        x, y, n = self.probe_batch(state)
        out = self.measure(state.model, x, y, state.trainer.criterion)
        if state.optimizer is not None:
            eta = float(state.lr)
            out.update(lr=eta, two_over_lr=2.0 / eta if eta > 0 else math.inf,
                       gd_ratio=eta * out["lambda_max"] / 2)
            if "trace" in out:
                out["trace_ratio"] = eta * out["trace"] / 2
                out["sgd_ratio"] = sgd_noise_weight(n, self.batch_size) * out["trace_ratio"]
        return out

    def state_dict(self) -> dict:
        return {"v_prev": self.v_prev, "generator": None if self.generator is None else self.generator.get_state(),
                "calls": self.calls, "lambda_next": self.lambda_next, "gap_at": self.gap_at,
                "params_prev": self.params_prev, "v_block": self.v_block}

    def load_state_dict(self, sd: dict) -> None:
        self.v_prev = sd.get("v_prev")
        self.calls, self.lambda_next, self.gap_at = sd.get("calls", 0), sd.get("lambda_next"), sd.get("gap_at", -1)
        self.params_prev, self.v_block = sd.get("params_prev"), sd.get("v_block")
        if sd.get("generator") is not None and self.generator is not None:
            self.generator.set_state(sd["generator"])

