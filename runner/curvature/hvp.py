"""Hessian-vector products of a model's loss on a fixed batch, without side effects on training.

`HessianOperator(model, loss_fn, x, y)` is the Hessian H = d^2 L / d theta^2 of
L(theta) = loss_fn(model(x; theta), y) at the model's current parameters, as a linear operator on
flat vectors of length `dim` (parameters in `model.named_parameters()` order). `op(v)` takes one
vector (P,) or a batch (k, P) and returns H v in the same shape; `op.n_matvec` counts vectors;
`op.gradient()` is the flat gradient on the same batch.

Two ways to compute H v, both batched over vectors with vmap:
- `hvp="graph"` (default): one create-graph gradient g(theta) per operator, then each product is a
  vector-Jacobian product of g (reverse-over-reverse with the first pass reused). Cheapest when
  many products are taken on the same batch, as every estimator here does.
- `hvp="jvp"`: torch.func forward-over-reverse, `jvp(grad(L), theta, v)`, recomputed per product;
  holds no graph between products (less memory on big batches).
`chunk_size` splits the batch into chunks whose Hessians are averaged (bounded memory);
`vector_batch` products go through vmap at once (default: 16 on CUDA, 1 on the CPU, where batching
is no faster and much slower for convolutions).

Why a context of our own and not `runner.hooks.base.eval_mode`: HVPs need autograd, which
inference mode turns off. `probe_mode` puts dropout off, BatchNorm in the chosen mode, never
touches `.grad` (products use `autograd.grad` on detached leaves) or BatchNorm's running
statistics, and restores every module's train/eval flag.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch
from torch.func import functional_call, grad, jvp, vmap

from runner.errors import OptrunError

BATCHNORM_MODES = ("eval", "batch")
HVP_MODES = ("graph", "jvp")


@contextmanager
def probe_mode(model: torch.nn.Module, batchnorm: str = "eval"):
    """Dropout off; BatchNorm uses running statistics (`eval`) or the probe batch's own statistics
    (`batch`) and never updates its buffers; autograd on; all flags restored afterwards."""
    if batchnorm not in BATCHNORM_MODES:
        raise OptrunError(f"batchnorm: expected one of {', '.join(BATCHNORM_MODES)}, got {batchnorm!r}")
    modes = [(m, m.training) for m in model.modules()]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)]
    tracking = [(m, m.track_running_stats) for m in norms]
    model.eval()
    if batchnorm == "batch":
        for m in norms:  # training + no tracking = batch statistics, buffers untouched
            m.train()
            m.track_running_stats = False
    try:
        with torch.enable_grad():
            yield
    finally:
        for m, t in tracking:
            m.track_running_stats = t
        for m, training in modes:
            m.training = training


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    """The trainable parameters as one detached flat vector (the operator's coordinates)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


class HessianOperator:
    def __init__(self, model: torch.nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor,
                 hvp: str = "graph", chunk_size: int | None = None, vector_batch: int | None = None):
        if hvp not in HVP_MODES:
            raise OptrunError(f"hvp: expected one of {', '.join(HVP_MODES)}, got {hvp!r}")
        self.model, self.loss_fn, self.mode = model, loss_fn, hvp
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        self.names = [k for k, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.params = {k: p.detach().requires_grad_(hvp == "graph") for k, p in named}
        self.frozen = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
        self.buffers = dict(model.named_buffers())
        ref = named[0][1]
        self.dim, self.dtype, self.device = sum(self.sizes), ref.dtype, ref.device
        # vmap-batched products pay off on a GPU; on a CPU they are no faster (slower for convolutions)
        self.vector_batch = max(int(vector_batch), 1) if vector_batch else (16 if ref.device.type == "cuda" else 1)
        n = len(x)
        step = n if not chunk_size else max(int(chunk_size), 1)
        self.chunks = [(x[i:i + step], y[i:i + step], min(step, n - i) / n) for i in range(0, n, step)]
        self.n_matvec = 0
        self._grads = None

    def unflatten(self, v: torch.Tensor) -> dict:
        return {k: t.view(s) for k, t, s in zip(self.names, v.split(self.sizes), self.shapes)}

    def loss(self, params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(functional_call(self.model, {**params, **self.frozen, **self.buffers}, (x,)), y)

    def _graph_grads(self) -> list[tuple[torch.Tensor, ...]]:
        """Create-graph gradients per chunk, built once and reused by every product."""
        if self._grads is None:
            leaves = list(self.params.values())
            self._grads = [torch.autograd.grad(self.loss(self.params, x, y) * w if w != 1 else
                                               self.loss(self.params, x, y), leaves, create_graph=True)
                           for x, y, w in self.chunks]
        return self._grads

    def _hvp_batch(self, vs: torch.Tensor) -> torch.Tensor:
        """H v for a batch of flat vectors (k, P)."""
        k = len(vs)
        if self.mode == "graph":
            leaves = list(self.params.values())
            parts = [t.view(k, *s) for t, s in zip(vs.split(self.sizes, dim=1), self.shapes)]
            if k == 1:
                parts = [t[0] for t in parts]
            hvs = [torch.autograd.grad(g, leaves, grad_outputs=parts, retain_graph=True, is_grads_batched=k > 1)
                   for g in self._graph_grads()]
            return torch.cat([sum(ts).reshape(k, -1) for ts in zip(*hvs)], dim=1)
        out = 0
        for x, y, w in self.chunks:
            g = grad(lambda p: self.loss(p, x, y) * w)
            one = lambda v: torch.cat([t.reshape(-1) for t in jvp(g, (self.params,), (self.unflatten(v),))[1].values()])  # noqa: E731
            out = out + (vmap(one)(vs) if len(vs) > 1 else one(vs[0])[None])
        return out.detach()

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        single = v.dim() == 1
        vs = v[None] if single else v
        with torch.enable_grad():
            out = torch.cat([self._hvp_batch(vs[i:i + self.vector_batch]) for i in range(0, len(vs), self.vector_batch)])
        self.n_matvec += len(vs)
        return out[0] if single else out

    def gradient(self) -> torch.Tensor:
        """The flat gradient of the loss at the operator's parameters (reuses the graph in `graph` mode),
        e.g. for H g or a drift-adjusted step size."""
        with torch.enable_grad():
            if self.mode == "graph":
                return torch.cat([sum(ts).reshape(-1) for ts in zip(*self._graph_grads())]).detach()
            g = [grad(lambda p: self.loss(p, x, y) * w)(self.params) for x, y, w in self.chunks]
            return torch.cat([sum(d[k] for d in g).reshape(-1) for k in self.names]).detach()

    def release(self) -> None:
        """Drop the stored graph (the operator can still be used; it is rebuilt on demand)."""
        self._grads = None


def dense_hessian(model: torch.nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The exact (P, P) Hessian via torch.func.hessian: the reference the estimators are tested on."""
    op = HessianOperator(model, loss_fn, x, y, hvp="jvp")
    flat = torch.cat([p.reshape(-1) for p in op.params.values()])
    h = torch.func.hessian(lambda f: op.loss(op.unflatten(f), x, y))(flat)
    return h.detach()
