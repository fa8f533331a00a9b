"""Zeroth-order estimators: directions from loss values (and one forward-mode derivative) only.

Weight perturbation, for a random direction v over all P trainable scalars:

- `SPSA` (Spall 1992): (f(θ + c v) − f(θ − c v)) / (2c) · v, v Rademacher (or Gaussian), two-sided
  (or one-sided against the clean loss), averaged over `directions` draws.
- `ForwardGradient` (Baydin et al. 2022): (∇f · v) v with v ~ N(0, I), the directional derivative
  by one forward-mode pass (`torch.func.jvp`): no finite-difference bias.
- `AntitheticES` (OpenAI-ES, Salimans et al. 2017): 1/(n σ) Σ_i s_i ε_i over n/2 antithetic pairs
  ±ε_i ~ N(0, I) with fitness shaping s (centred ranks, the paper's default) or raw loss values.

For one Gaussian direction the estimate's expected cosine with the true gradient is ≈ √(2/(π P)).

Node perturbation (`NodePerturbation`, e.g. Werfel et al. 2003; Dalm et al. 2023) perturbs the
pre-activations (the outputs of every `nn.Linear`) with per-sample noise ξ ~ N(0, σ²), and
credits each layer with ΔL · ξ xᵀ / σ², where x is the layer's input and ΔL the loss change of the
sample (per-sample losses when the problem gives them, else the batch loss). Its perturbation lives
in the space of nodes × samples, not of weights.

Every estimator also evaluates the clean loss (one forward pass, counted) for the log and train_acc.
"""
from __future__ import annotations

import torch
from torch.func import jvp

from runner.errors import OptrunError
from runner.estimators.base import Estimate, GradientEstimator, Problem


def _check_positive(name: str, value, integer: bool = False) -> None:
    ok = value > 0 and (not integer or int(value) == value)
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        raise OptrunError(f"trainer.estimator.{name}: expected {kind}, got {value!r}")


def _zeros(problem: Problem) -> dict:
    return {n: torch.zeros_like(p) for n, p in problem.params.items()}


class SPSA(GradientEstimator):
    """Simultaneous-perturbation finite differences (see the module docstring); `c` is the
    perturbation size, `directions` the number of averaged draws per step."""

    name = "spsa"

    def __init__(self, c: float = 1e-3, directions: int = 1, two_sided: bool = True, distribution: str = "rademacher"):
        _check_positive("c", c)
        _check_positive("directions", directions, integer=True)
        if distribution not in ("rademacher", "gaussian"):
            raise OptrunError(f"trainer.estimator.distribution: expected rademacher or gaussian, got {distribution!r}")
        self.c, self.directions, self.two_sided = float(c), int(directions), bool(two_sided)
        self.rademacher = distribution == "rademacher"

    def cost(self) -> dict[str, int]:
        n = 1 + self.directions * (2 if self.two_sided else 1)
        return {"forward_passes": n, "backward_passes": 0, "function_evals": n}

    @torch.no_grad()
    def estimate(self, problem: Problem, batch, state, generator: torch.Generator) -> Estimate:
        loss, out = problem.loss(problem.params, batch)
        grads = _zeros(problem)
        for _ in range(self.directions):
            v = problem.randn(generator, self.rademacher)
            up = problem.loss(problem.perturbed(v, self.c), batch)[0]
            if self.two_sided:
                slope = (up - problem.loss(problem.perturbed(v, -self.c), batch)[0]) / (2 * self.c)
            else:
                slope = (up - loss) / self.c
            for n in grads:
                grads[n].add_(v[n], alpha=float(slope) / self.directions)
        return Estimate(loss, grads, self.cost(), output=out)


class ForwardGradient(GradientEstimator):
    """(∇f · v) v, v ~ N(0, I), averaged over `directions`; each directional derivative is one
    forward-mode pass (counted as a forward pass; the clean loss comes with the first)."""

    name = "forward_gradient"

    def __init__(self, directions: int = 1):
        _check_positive("directions", directions, integer=True)
        self.directions = int(directions)

    def cost(self) -> dict[str, int]:
        return {"forward_passes": self.directions, "backward_passes": 0, "function_evals": self.directions}

    def estimate(self, problem: Problem, batch, state, generator: torch.Generator) -> Estimate:
        names = list(problem.params)
        primals = tuple(problem.params[n].detach() for n in names)

        def f(*ps):
            loss, out = problem.loss(dict(zip(names, ps)), batch)
            return loss, out

        grads, loss, out = _zeros(problem), None, None
        for _ in range(self.directions):
            v = problem.randn(generator)
            (loss, out), (dloss, _) = jvp(f, primals, tuple(v[n] for n in names))
            for n in names:
                grads[n].add_(v[n], alpha=float(dloss) / self.directions)
        return Estimate(loss.detach(), grads, self.cost(), output=out.detach())


def centered_ranks(values: torch.Tensor) -> torch.Tensor:
    """OpenAI-ES fitness shaping: ranks mapped linearly to [-0.5, 0.5] (ties broken by order)."""
    ranks = torch.empty_like(values)
    ranks[values.argsort()] = torch.arange(len(values), dtype=values.dtype, device=values.device)
    return ranks / (len(values) - 1) - 0.5


class AntitheticES(GradientEstimator):
    """OpenAI-ES with antithetic pairs: `population` evaluations (an even number) at θ ± σ ε_i;
    `rank_shaping` replaces the losses by their centred ranks (the paper's default)."""

    name = "antithetic_es"

    def __init__(self, sigma: float = 0.02, population: int = 50, rank_shaping: bool = True):
        _check_positive("sigma", sigma)
        _check_positive("population", population, integer=True)
        if population % 2:
            raise OptrunError(f"trainer.estimator.population: expected an even number (antithetic pairs), got {population}")
        self.sigma, self.population, self.rank_shaping = float(sigma), int(population), bool(rank_shaping)

    def cost(self) -> dict[str, int]:
        return {"forward_passes": self.population + 1, "backward_passes": 0, "function_evals": self.population + 1}

    @torch.no_grad()
    def estimate(self, problem: Problem, batch, state, generator: torch.Generator) -> Estimate:
        loss, out = problem.loss(problem.params, batch)
        eps = [problem.randn(generator) for _ in range(self.population // 2)]
        values = []
        for e in eps:
            values.append(problem.loss(problem.perturbed(e, self.sigma), batch)[0])
            values.append(problem.loss(problem.perturbed(e, -self.sigma), batch)[0])
        values = torch.stack(values)
        weights = centered_ranks(values) if self.rank_shaping else values
        grads = _zeros(problem)
        for i, e in enumerate(eps):  # s(+e) e + s(-e)(-e) = (s(+e) - s(-e)) e
            w = float(weights[2 * i] - weights[2 * i + 1]) / (self.population * self.sigma)
            for n in grads:
                grads[n].add_(e[n], alpha=w)
        return Estimate(loss, grads, self.cost(), output=out)


class NodePerturbation(GradientEstimator):
    """Perturb every `nn.Linear` output with per-sample N(0, σ²) noise (one noisy and one clean forward
    pass); see the module docstring. Parameters outside linear layers get no direction: an error."""

    name = "node_perturbation"

    def __init__(self, sigma: float = 1e-3, per_example: bool = True):
        _check_positive("sigma", sigma)
        self.sigma, self.use_per_example = float(sigma), bool(per_example)

    def cost(self) -> dict[str, int]:
        return {"forward_passes": 2, "backward_passes": 0, "function_evals": 2}

    def setup(self, problem: Problem, state) -> None:
        self.layers(problem)

    @staticmethod
    def layers(problem: Problem) -> dict[str, torch.nn.Linear]:
        linears = {n: m for n, m in problem.module.named_modules() if isinstance(m, torch.nn.Linear)}
        covered = {f"{n}.{k}" if n else k for n, m in linears.items() for k, _ in m.named_parameters()}
        left = sorted(set(problem.params) - covered)
        if left:
            raise OptrunError(f"estimator node_perturbation: perturbs nn.Linear outputs only; these parameters "
                              f"are outside linear layers: {', '.join(left[:5])}")
        return linears

    @torch.no_grad()
    def estimate(self, problem: Problem, batch, state, generator: torch.Generator) -> Estimate:
        x, y = batch
        per_example = problem.per_example if self.use_per_example else None
        out = problem.forward(problem.params, x)
        clean = per_example(out, y) if per_example else problem.criterion(out, y)
        loss = clean.mean() if per_example else clean
        records: dict[str, tuple] = {}

        def perturb(name):
            def hook(module, inputs, output):
                if name in records:
                    raise OptrunError(f"estimator node_perturbation: layer {name!r} runs more than once per forward "
                                      f"pass (a time loop or shared weights); its credit would be ambiguous")
                xi = torch.randn(output.shape, generator=generator, device=output.device, dtype=output.dtype) * self.sigma
                records[name] = (inputs[0], xi)
                return output + xi
            return hook

        handles = [m.register_forward_hook(perturb(n)) for n, m in self.layers(problem).items()]
        try:
            noisy_out = problem.forward(problem.params, x)
        finally:
            for h in handles:
                h.remove()
        if per_example:  # d loss / d a_b ≈ (Δl_b / B) ξ_b / σ²
            delta = (per_example(noisy_out, y) - clean) / (len(y) * self.sigma ** 2)
        else:
            delta = (problem.criterion(noisy_out, y) - clean) / self.sigma ** 2
        grads = {n: torch.zeros_like(p) for n, p in problem.params.items()}
        for name, (inp, xi) in records.items():
            credit = xi * (delta.view(-1, *[1] * (xi.dim() - 1)) if per_example else delta)
            prefix = f"{name}." if name else ""
            if prefix + "weight" in grads:
                grads[prefix + "weight"] = credit.reshape(-1, credit.shape[-1]).T @ inp.reshape(-1, inp.shape[-1])
            if prefix + "bias" in grads:
                grads[prefix + "bias"] = credit.reshape(-1, credit.shape[-1]).sum(0)
        return Estimate(loss, grads, self.cost(), output=out)
