"""Branch and bound on pre-activations (the paper's Sec. on BaB): split the box by the sign of an unstable
neuron's pre-activation, bound each half with `bounds.linear` (the split neuron's relu' becomes 0 or 1 and
its bounds are clamped to the half-line), and keep splitting the domain with the largest bound until the
time or domain budget runs out. The answer is the largest bound over the open domains (sound: the domains
cover the box). A domain whose clamped bounds cross (l > u somewhere) is empty and dropped.
"""
from __future__ import annotations

import heapq
import itertools
import time

import torch

from experiments.local_lipschitz import bounds


def _evaluate(layers, x0, eps, split, steps, lr, decay, refine):
    fw = bounds.forward_bounds(layers, x0, eps, split)
    if any(bool((lk > uk + 1e-9).any()) for lk, uk in zip(fw.l, fw.u)):
        return None, fw
    value, _ = bounds.linear(layers, fw, x0, eps, steps, lr, decay, refine)
    return float(value.max()), fw


def _branch_neuron(fw):
    """(layer, neuron) of the unstable neuron with the largest min(u, -l), earliest layer first on ties."""
    best, where = -1.0, None
    for k, (lk, uk) in enumerate(zip(fw.l, fw.u)):
        score = torch.where((lk < 0) & (uk > 0), torch.minimum(uk, -lk), torch.full_like(lk, -1.0))
        i = int(score.argmax())
        if float(score[i]) > best:
            best, where = float(score[i]), (k, i)
    return where


def branch_and_bound(layers, x0, eps, timeout: float, max_domains: int, steps: int = 20, lr: float = 0.5,
                     decay: float = 0.98, refine: bool = True) -> tuple[float, int]:
    """(bound on the local Lipschitz constant, number of domains evaluated)."""
    start, count = time.perf_counter(), itertools.count()
    split = [torch.zeros(W.shape[0]) for W, _ in layers[:-1]]
    value, fw = _evaluate(layers, x0, eps, split, steps, lr, decay, refine)
    heap, evaluated = [(-value, next(count), split, fw)], 1
    while heap and time.perf_counter() - start < timeout and evaluated + 2 <= max_domains:
        neg, _, split, fw = heapq.heappop(heap)
        where = _branch_neuron(fw)
        if where is None:  # every neuron stable: this domain's bound is its exact value, and the largest
            heapq.heappush(heap, (neg, next(count), split, fw))
            break
        k, i = where
        for sign in (1.0, -1.0):
            child = [s.clone() for s in split]
            child[k][i] = sign
            value, cfw = _evaluate(layers, x0, eps, child, steps, lr, decay, refine)
            evaluated += 1
            if value is not None:  # a subdomain inherits its parent's bound when its own is looser
                heapq.heappush(heap, (max(-value, neg), next(count), child, cfw))
    return (-heap[0][0] if heap else 0.0), evaluated
