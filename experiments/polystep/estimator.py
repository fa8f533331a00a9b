"""PolyStep (Le 2026, arXiv 2605.01928): a forward-only step by a one-sided entropic transport.

The parameters are written θ = θ_base + P z, with P a random low-rank subspace per layer and z the
subspace coordinates, split into particles of `particle_dim` coordinates each. One step:

1. around each particle i, an orthoplex (the 2·particle_dim vertices ±e_j), turned by a random
   rotation R_i (Haar on SO(particle_dim)), gives directions d_iv = R_i (±e_j);
2. the cost C[i, v] is the batch loss with particle i alone moved to z_i + probe_r · d_iv (one
   forward pass each: particles × vertices per step);
3. W = softmax(−C / ε) row by row: the limit of entropic optimal transport from the particles to
   their vertices when only the particles' marginal is kept (no Sinkhorn iterations);
4. each particle moves to its barycentre, z_i <- z_i + step_r · Σ_v W_iv d_iv.

Every `absorb_every` steps the move is folded into θ_base, z restarts at 0 and a fresh subspace is
drawn. The estimator returns the direction −P Δz; with SGD at lr 1 (no momentum, no weight decay;
checked in `setup`) the optimizer step is exactly the move, so the model's parameters *are*
θ_base + P z at all times and absorbing changes only the subspace the next steps search in.

`step_radius` and `probe_radius` are the distances themselves (in subspace coordinates). The official
code multiplies its radii by ε and puts its single probe at the midpoint of the probe segment, so its
SNN settings (ε = 0.5, step radius 2, probe radius 1) are step_radius = 2 · 0.5 = 1 and probe_radius =
1 · 0.5 / 2 = 0.25 here (the defaults). Costs are used unscaled (the code's default; `cost_scale:
mean` divides C by its mean absolute value).

Where we chose (see the card): the per-layer subspace of a weight matrix (d_out × d_in) has the
official number of coordinates, (d_out + d_in) · rank, but a factored form, ΔW = A Vᵀ + U Bᵀ with
U (d_out × rank) and V (d_in × rank) random orthonormal columns and A, B the coordinates (the official
code uses a dense QR-orthonormal projection of the same size, 1.5 GB for MNIST's first layer); biases
(1-D parameters) are their own coordinates, as in the code. The code's extras for the SNN (biased
rotation, Anderson acceleration) are not implemented.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from runner.errors import OptrunError
from runner.estimators.base import Estimate, GradientEstimator, Problem
from runner.models.snn import RESETS, LIFNet

COST_SCALES = (None, "mean")
STAND_IN_PARTICLES = 2


def random_rotations(n: int, dim: int, generator: torch.Generator, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """n Haar-random rotations of R^dim (QR of a Gaussian with Mezzadri's sign fix, det +1)."""
    g = torch.randn(n, dim, dim, generator=generator, dtype=dtype, device=device)
    q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    flip = torch.linalg.det(q) < 0
    q[flip, :, 0] = -q[flip, :, 0]
    return q


def orthonormal(rows: int, cols: int, generator: torch.Generator, dtype, device) -> torch.Tensor:
    """A random (rows × cols) matrix with orthonormal columns (cols <= rows)."""
    g = torch.randn(rows, cols, generator=generator, dtype=dtype, device=device)
    return torch.linalg.qr(g)[0]


def barycentric_move(costs: torch.Tensor, dirs: torch.Tensor, epsilon: float, step_radius: float):
    """Steps 3-4: W = softmax(−C/ε) per row, move_i = step_radius · Σ_v W_iv d_iv. Returns (move, W)."""
    w = torch.softmax(-costs / epsilon, dim=1)
    return step_radius * torch.einsum("pv,pvi->pi", w, dirs), w


class LayerSubspace:
    """One parameter's coordinates: a matrix (d_out, d_in...) gets (d_out + d_in) · r coordinates
    (A, B) with ΔW = A Vᵀ + U Bᵀ; a vector (bias) is its own coordinates."""

    def __init__(self, shape: torch.Size, rank: int, generator: torch.Generator, dtype, device):
        self.shape = shape
        if len(shape) < 2:
            self.size, self.u, self.v = shape.numel(), None, None
            return
        d_out, d_in = shape[0], math.prod(shape[1:])
        self.r = min(rank, d_out, d_in)
        self.d_out, self.d_in = d_out, d_in
        self.u = orthonormal(d_out, self.r, generator, dtype, device)
        self.v = orthonormal(d_in, self.r, generator, dtype, device)
        self.size = (d_out + d_in) * self.r

    def lift(self, coords: torch.Tensor) -> torch.Tensor:
        """(n, size) coordinates -> (n, *shape) parameter displacements."""
        n = coords.shape[0]
        if self.u is None:
            return coords.view(n, *self.shape)
        a = coords[:, : self.d_out * self.r].view(n, self.d_out, self.r)
        b = coords[:, self.d_out * self.r:].view(n, self.d_in, self.r)
        return (a @ self.v.T + self.u @ b.transpose(1, 2)).view(n, *self.shape)


class StackedLIF:
    """`vmap(problem.loss)` over stacked parameters for a hard-LIF network (runner.models.snn.LIFNet):
    the same losses, bit for bit, in less than half the time (these costs are nearly all of a step).

    Under vmap, LIFNet.forward makes about ten passes per time step and layer over (evaluations x batch
    x width) tensors: the spike as a bool tensor, its float copy, the zero-derivative term
    `0 * (u - u.detach())` (exactly +0 for a finite u) and the reset `u * (1 - s)` each allocate a new
    tensor. Here an update is four in-place or float-output passes with the model's arithmetic: the same
    linear maps (vmap of F.linear), `beta * u + current` rounded in the same two steps, the spike written
    as a float by the comparison itself, the zero reset as u - u s (u, or +0 where u >= threshold > 0;
    only the sign of a zero membrane can differ, which no spike, count or loss sees), the loss as
    `problem.criterion` under vmap. Bounded currents rule out an overflowing membrane (where the model's
    zero-derivative term would give NaN); otherwise `__call__` returns None and the caller takes the
    generic path."""

    def __init__(self, problem: Problem):
        self.net, self.criterion = problem.module, problem.criterion
        self.depth = len(self.net.layers)

    @staticmethod
    def applies(problem: Problem) -> bool:
        """Exactly a LIFNet (a subclass may change forward), all of its parameters in `params`, no hooks."""
        net, modules = problem.module, torch.nn.modules.module
        if type(net) is not LIFNet or net.reset not in RESETS or not net.threshold > 0:
            return False
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())
        hooked = hooked or modules._global_forward_hooks or modules._global_forward_pre_hooks
        names = {f"layers.{i}.{k}" for i in range(len(net.layers)) for k in ("weight", "bias")}
        return not hooked and set(problem.params) == names == {n for n, _ in net.named_parameters()}

    @torch.no_grad()
    def __call__(self, params: dict, batch) -> torch.Tensor | None:
        """Losses (n,) at the n stacked parameter sets `params` (name -> (n, *shape)), or None."""
        net, (x, y) = self.net, batch
        weights = [params[f"layers.{i}.weight"] for i in range(self.depth)]
        biases = [params[f"layers.{i}.bias"] for i in range(self.depth)]
        drive = torch.func.vmap(F.linear, in_dims=(None, 0, 0))(x.reshape(x.shape[0], -1), weights[0], biases[0])
        # |u_t| <= t * max|current| (beta <= 1, spikes in {0, 1}): no membrane reaches inf (NaN fails too)
        bounds = [drive.abs().amax()] + [(w.abs().sum(-1) + b.abs()).amax() for w, b in zip(weights[1:], biases[1:])]
        if not float(torch.stack(bounds).amax() + net.threshold) * net.timesteps < 1e30:
            return None
        membranes, spikes, counts = [None] * self.depth, [None] * self.depth, None
        for _ in range(net.timesteps):  # LIFNet.forward's loop
            s = None
            for i in range(self.depth):
                current = drive if i == 0 else torch.func.vmap(F.linear)(s, weights[i], biases[i])
                if membranes[i] is None:
                    membranes[i], spikes[i] = torch.zeros_like(current), torch.empty_like(current)
                u = membranes[i].mul_(net.beta).add_(current)
                s = torch.ge(u, net.threshold, out=spikes[i])
                if net.reset == "zero":
                    u.addcmul_(u, s, value=-1.0)
                else:
                    u.sub_(s * net.threshold)
            counts = s.clone() if counts is None else counts.add_(s)
        return torch.func.vmap(lambda out: self.criterion(out, y))(counts * net.readout_scale)


class PolyStep(GradientEstimator):
    """The PolyStep move as an estimator direction (see the module docstring)."""

    name = "polystep"

    def __init__(self, epsilon: float = 0.5, step_radius: float = 1.0, probe_radius: float = 0.25, rank: int = 4,
                 particle_dim: int = 8, absorb_every: int = 20, cost_scale: str | None = None,
                 chunk_size: int = 512, stand_in: bool = False):
        for key, value in (("epsilon", epsilon), ("step_radius", step_radius), ("probe_radius", probe_radius)):
            if not value > 0:
                raise OptrunError(f"trainer.estimator.{key}: expected a positive number, got {value!r}")
        for key, value in (("rank", rank), ("particle_dim", particle_dim), ("chunk_size", chunk_size)):
            if not (int(value) == value and value > 0):
                raise OptrunError(f"trainer.estimator.{key}: expected a positive integer, got {value!r}")
        if particle_dim < 2:
            raise OptrunError(f"trainer.estimator.particle_dim: the orthoplex needs >= 2 dimensions, got {particle_dim}")
        if not (int(absorb_every) == absorb_every and absorb_every >= 0):
            raise OptrunError(f"trainer.estimator.absorb_every: expected a non-negative integer (0: never), got {absorb_every!r}")
        if cost_scale not in COST_SCALES:
            raise OptrunError(f"trainer.estimator.cost_scale: expected null or mean, got {cost_scale!r}")
        self.epsilon, self.rank, self.pdim = float(epsilon), int(rank), int(particle_dim)
        self.step_r, self.probe_r = float(step_radius), float(probe_radius)
        self.absorb_every, self.cost_scale, self.chunk_size = int(absorb_every), cost_scale, int(chunk_size)
        self.stand_in = bool(stand_in)  # tests only: probe STAND_IN_PARTICLES particles (see `probed`)
        self.layers: dict[str, LayerSubspace] | None = None
        self.since_absorb, self.absorbed = 0, 0
        self._generator: torch.Generator | None = None
        self._specs: dict = {}

    # --- subspace and cost ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return sum(s.size for s in self.layers.values())

    @property
    def particles(self) -> int:
        return -(-self.dim // self.pdim)

    @property
    def probed(self) -> int:
        """Particles whose vertices are evaluated: all of them; with `stand_in: true` (set by the test
        suite's stand-in switch, never by a study) only the first few, so that a paper-scale config (8,688
        forward passes of a 512-sample, 15-step SNN per step) can take two steps on a CPU."""
        return min(self.particles, STAND_IN_PARTICLES) if self.stand_in else self.particles

    @property
    def vertices(self) -> int:
        return 2 * self.pdim

    def cost(self) -> dict[str, int]:
        if self.layers is None:
            raise OptrunError("estimator polystep: its cost depends on the model; call setup(problem, state) first")
        n = self.probed * self.vertices + 1
        return {"forward_passes": n, "backward_passes": 0, "function_evals": n}

    def columns(self) -> list[str]:
        return ["epsilon", "step_radius", "probe_radius", "cost_min", "cost_mean", "w_entropy", "move_norm",
                "particles", "absorbed"]

    def _draw_subspace(self) -> None:
        self.layers = {n: LayerSubspace(shape, self.rank, self._generator, dtype, device)
                       for n, (shape, dtype, device) in self._specs.items()}

    def setup(self, problem: Problem, state) -> None:
        opt = getattr(state, "optimizer", None)
        if opt is not None:
            group = opt.param_groups[0]
            plain = (isinstance(opt, torch.optim.SGD) and group["lr"] == 1.0 and not group.get("momentum")
                     and not group.get("weight_decay"))
            if not plain:
                raise OptrunError("estimator polystep: its direction is the move itself; use optimizer=sgd with "
                                  "optimizer.lr=1 optimizer.momentum=0 optimizer.weight_decay=0")
        self._generator = state.stream("trainer.estimator.subspace")
        self._specs = {n: (p.shape, p.dtype, p.device) for n, p in problem.params.items()}
        self._draw_subspace()

    def lift(self, coords: torch.Tensor) -> dict[str, torch.Tensor]:
        """(n, dim or more) subspace displacements -> per-parameter displacements (n, *shape)."""
        out, start = {}, 0
        for name, layer in self.layers.items():
            out[name] = layer.lift(coords[:, start:start + layer.size])
            start += layer.size
        return out

    # --- the step ------------------------------------------------------------------------------------
    @torch.no_grad()
    def estimate(self, problem: Problem, batch, state, generator: torch.Generator) -> Estimate:
        base = {n: p.detach() for n, p in problem.params.items()}
        loss, out = problem.loss(base, batch)
        ref = next(iter(base.values()))
        n_part, n_vert, pdim = self.particles, self.vertices, self.pdim
        rot = random_rotations(n_part, pdim, generator, ref.dtype, ref.device)           # (P, d, d)
        template = torch.cat([torch.eye(pdim), -torch.eye(pdim)]).to(ref)                # (V, d): ±e_j
        dirs = torch.einsum("pij,vj->pvi", rot, template)                                # (P, V, d)

        def batch_loss(params):
            return problem.loss(params, batch)[0]

        evaluate = torch.func.vmap(batch_loss)
        fast = StackedLIF(problem) if StackedLIF.applies(problem) else None
        costs = []
        per_chunk = max(1, self.chunk_size // n_vert)
        for a in range(0, self.probed, per_chunk):
            b = min(self.probed, a + per_chunk)
            z = torch.zeros(b - a, n_vert, n_part, pdim, dtype=ref.dtype, device=ref.device)
            idx = torch.arange(b - a, device=ref.device)
            z[idx, :, idx + a, :] = self.probe_r * dirs[a:b]
            delta = self.lift(z.view((b - a) * n_vert, n_part * pdim))
            params = {n: base[n] + delta[n] for n in base}
            losses = fast(params, batch) if fast is not None else None
            costs.append((evaluate(params) if losses is None else losses).view(b - a, n_vert))
        c = torch.cat(costs)                                                             # (P, V)
        scaled = c / c.abs().mean().clamp_min(1e-10) if self.cost_scale == "mean" else c
        move = torch.zeros(n_part, pdim, dtype=ref.dtype, device=ref.device)
        move[:self.probed], w = barycentric_move(scaled, dirs[:self.probed], self.epsilon, self.step_r)  # (P, d)
        step = self.lift(move.reshape(1, -1))
        grads = {n: -step[n][0] for n in base}
        entropy = -(w * w.clamp_min(1e-30).log()).sum(1).mean()
        metrics = {"epsilon": self.epsilon, "step_radius": self.step_r, "probe_radius": self.probe_r,
                   "cost_min": float(c.min()), "cost_mean": float(c.mean()), "w_entropy": float(entropy),
                   "move_norm": float(move.norm()), "particles": n_part, "absorbed": self.absorbed}
        return Estimate(loss, grads, self.cost(), output=out, metrics=metrics)

    def after_step(self, state) -> None:
        """Absorb: every `absorb_every` steps z restarts at 0 in a fresh random subspace."""
        self.since_absorb += 1
        if self.absorb_every and self.since_absorb >= self.absorb_every:
            self._draw_subspace()
            self.since_absorb, self.absorbed = 0, self.absorbed + 1

    def state_dict(self) -> dict:
        return {"since_absorb": self.since_absorb, "absorbed": self.absorbed,
                "subspace": {n: (s.u, s.v) for n, s in (self.layers or {}).items()}}

    def load_state_dict(self, sd: dict) -> None:
        self.since_absorb, self.absorbed = int(sd["since_absorb"]), int(sd["absorbed"])
        for name, (u, v) in sd["subspace"].items():
            layer = self.layers[name]
            layer.u, layer.v = u, v
