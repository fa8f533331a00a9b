"""Gradient descent on a small landscape, with the flows that model it integrated alongside.

Each step applies one GD update theta <- theta - h grad E (the iterate the flows try to predict) and
integrates every flow in `flows` (pf, ngf, mf; see `flows.py`) over time h with RK4 from its own
previous state, so errors accumulate as they would over a trajectory. Logs the energy at the GD
iterate, h * lambda_max there, and for each flow its relative distance to the GD iterate
(`err_pf`, `err_ngf`, `err_mf`). `eigenvalues` are the quadratic's Hessian spectrum and `rotate` (default
true) turns its eigenbasis by a seeded rotation; both are unused by the Rosenbrock toy. The run stops early (completed) if the GD iterate leaves
`max_norm` (GD with h lambda > 2 diverges by design).
"""
from __future__ import annotations

import torch

from experiments.discretisation_drift.flows import FLOWS, make_landscape, max_curvature, relative_error, rk4
from runner.errors import OptrunError
from runner.trainers.base import Phase


class FlowCheckTrainer:
    def __init__(self, steps: int = 20, h: float = 0.1, landscape: str = "quadratic",
                 eigenvalues: list[float] = (1.0, 0.1), start: list[float] = (1.0, 1.0),
                 flows: list[str] = ("pf", "ngf", "mf"), substeps: int = 400, max_norm: float = 1e12,
                 rotate: bool = True):
        if steps <= 0 or not h > 0 or substeps <= 0:
            raise OptrunError(f"trainer: expected steps > 0, h > 0 and substeps > 0, got {steps}, {h}, {substeps}")
        unknown = [f for f in flows if f not in FLOWS]
        if unknown:
            raise OptrunError(f"trainer.flows: unknown {unknown} (expected some of: {', '.join(FLOWS)})")
        self.steps, self.h, self.substeps, self.max_norm = steps, h, substeps, max_norm
        self.landscape_name, self.eigenvalues = landscape, list(eigenvalues)
        self.start, self.flow_names, self.rotate = list(start), list(flows), bool(rotate)

    def phases(self, state) -> list[Phase]:
        quad = self.landscape_name == "quadratic"
        kwargs = {"eigenvalues": self.eigenvalues, "rotate": self.rotate} if quad else {}
        self.landscape = make_landscape(self.landscape_name, seed=state.seed, **kwargs)
        if len(self.start) != self.landscape.dim:
            raise OptrunError(f"trainer.start: expected {self.landscape.dim} coordinates, got {self.start}")
        self.theta = torch.tensor(self.start, dtype=torch.float64)
        self.fields = {f: FLOWS[f](self.landscape, self.h) for f in self.flow_names}
        self.flow_state = {f: self.theta.to(torch.complex128) for f in self.flow_names}
        return [Phase(steps=self.steps)]

    def begin_phase(self, state, phase) -> None:
        pass

    def step(self, state) -> dict:
        hl = self.h * max_curvature(self.landscape, self.theta)
        self.theta = self.theta - self.h * self.landscape.grad(self.theta)
        out = {"loss": float(self.landscape.energy(self.theta)), "h_lambda_max": hl,
               "theta_norm": float(self.theta.norm())}
        for f in self.flow_names:
            self.flow_state[f] = rk4(self.fields[f], self.flow_state[f], self.h, self.substeps)
            out[f"err_{f}"] = relative_error(self.flow_state[f], self.theta)
        state.stop = bool(self.theta.norm() > self.max_norm)
        return out

    def state_dict(self) -> dict:
        return {"theta": self.theta, "flow_state": self.flow_state}

    def load_state_dict(self, sd: dict) -> None:
        self.theta, self.flow_state = sd["theta"], sd["flow_state"]
