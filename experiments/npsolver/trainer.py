"""NPSolver (Zeng et al., arXiv 2605.25786): a neural Poisson solver trained by iterative physics supervision,
against a supervised and a physics-informed (residual) baseline, on masked-domain Poisson systems.

Data (runner/data/poisson.py): -Laplace(u) = f, u = 0 on the boundary, on an n x n grid with 0-4 square
corners cut out; A u = b with A the masked 5-point stencil (finite-volume scaling) and b = h^2 f. One step
draws a batch (f, mask, u*) and the network predicts u_hat = net(f, mask) (zero outside the mask). Losses
(RMS over the batch's unknowns, as the official code's `scheme` 4 and 5):

- `npsolver`:   u_tilde = K steps of Jacobi-PCG on A u = b started from u_hat, in float64 under no_grad
                (one CG on the block-diagonal batch system, runner/solvers/pcg.py);
                loss = RMS(u_hat - stopgrad(u_tilde)). With `stop_grad: false` the gradient also flows
                through the K PCG steps (the ablation the paper calls unstable).
- `residual`:   loss = RMS(b - A u_hat) (physics-informed, label-free).
- `supervised`: loss = RMS(u_hat - u*), u* from a sparse direct solve (labels).

Adam with gradient-norm clipping (official: 1.0) and the component's schedule (OneCycle, as official).
Logged per step: loss, res_rms = RMS(b - A u_hat), gap = RMS(u_hat - u_tilde) (npsolver), grad_norm, lr;
every `eval_every` steps and at the end, on the held-out set: test_rel_l2 (mean over instances of
||u_hat - u*|| / ||u*||), test_rmse, test_rel_res (||b - A u_hat|| / ||b||), test_rel_l2_c<k> per number
of cut corners; at the end, Jacobi-PCG iterations to ||r|| <= cg_tol ||b|| per instance started from
u_hat (cg_iters_pred) and from 0 (cg_iters_zero), and the array `example` (prediction, reference, mask of
the first test instance) for the error-map figure. Evaluation rows carry data_seconds (the data's generation
time; 0 when the cached set was reused).
"""
from __future__ import annotations

import torch

from runner.data.poisson import apply_laplacian, diagonal, grid, poisson_dataset
from runner.data.sources import TensorSource
from runner.errors import OptrunError
from runner.solvers.pcg import pcg
from runner.trainers.base import Phase, StepTrainer, TrainState

METHODS = ("npsolver", "residual", "supervised")


def masked_rms(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMS over the unknowns of the whole batch."""
    return (v.pow(2) * mask).sum().div(mask.sum()).sqrt()


class NPSolverTrainer(StepTrainer):
    def __init__(self, method: str = "npsolver", pcg_steps: int = 5, stop_grad: bool = True, steps: int = 600,
                 batch_size: int = 4, grid_size: int = 32, n_train: int = 512, n_test: int = 64,
                 corners: tuple = (0, 1, 2, 3, 4), modes: int = 10, length: float = 3.141592653589793,
                 corner_frac: float = 0.25, test_corners: tuple | None = None, grad_clip: float | None = 1.0, eval_every: int = 100,
                 cg_tol: float = 1e-6, cg_max_iters: int = 5000, data_seed: int | None = None,
                 stand_in: bool = False, diverge_above: float = 1e6):
        if method not in METHODS:
            raise OptrunError(f"trainer.method: unknown '{method}' (expected one of: {', '.join(METHODS)})")
        if pcg_steps < 1 or steps < 1 or batch_size < 1 or eval_every < 1:
            raise OptrunError("trainer: expected pcg_steps, steps, batch_size, eval_every >= 1")
        self.method, self.K, self.stop_grad, self.steps = method, int(pcg_steps), bool(stop_grad), int(steps)
        if stand_in:  # paper-scale build tests: instances of the paper's shapes, only a handful of them
            n_train, n_test = min(n_train, batch_size), min(n_test, 2)
        self.batch_size, self.n, self.sizes = batch_size, grid_size, (n_train, n_test)
        test_corners = tuple(corners if test_corners is None else test_corners)
        self.data_kw = {"corners": tuple(corners), "modes": modes, "length": length, "corner_frac": corner_frac,
                        "test_corners": test_corners}
        self.grad_clip, self.eval_every, self.cg_tol, self.cg_max = grad_clip, eval_every, cg_tol, cg_max_iters
        self.data_seed, self.diverge_above = data_seed, diverge_above
        self.h2 = grid(grid_size)[2] ** 2

    # -- setup
    def phases(self, state: TrainState) -> list[Phase]:
        if "net" not in state.optimizers:
            raise OptrunError("components.net: this trainer needs a network `net` with an optimizer")
        self.net, self.opt = state.modules["net"], state.optimizers["net"]
        seed = state.seed if self.data_seed is None else self.data_seed  # every arm of a seed: the same data
        data, info = poisson_dataset(*self.sizes, n=self.n, seed=seed, **self.data_kw)
        self.data_seconds = info["seconds"]
        dev = state.device
        self.test = {k[:-5]: v.to(dev) for k, v in data.items() if k.endswith("_test")}
        self.test["f"] = self.test["f"].float()
        self.source = TensorSource((data["f_train"].float(), data["mask_train"], data["u_train"].float()),
                                   batch_size=self.batch_size)
        self.source.setup(state.generators["batch"], dev)
        return [Phase(self.steps)]

    def columns(self, state: TrainState) -> list[str]:
        return (["data_seconds", "gap", "test_rel_l2", "test_rmse", "test_rel_res", "cg_iters_pred",
                 "cg_iters_zero", "cg_converged_pred"] + [f"test_rel_l2_c{k}" for k in sorted(set(self.data_kw["test_corners"]))])

    # -- the losses
    def _refine(self, u_hat: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """u_tilde = K Jacobi-PCG steps from u_hat in float64 (with gradient only for stop_grad: false)."""
        m = mask.double()  # converted once, not at every operator application
        out = pcg(lambda v: apply_laplacian(v, m), b.double(), u_hat.double(), diagonal(mask), self.K,
                  grad=not self.stop_grad)
        return out.x.to(u_hat.dtype)

    def step(self, state: TrainState) -> dict:
        f, mask, u_star = self.source.next()
        self.net.train()
        u_hat = self.net(f, mask)
        b = self.h2 * f * mask
        res = b - apply_laplacian(u_hat, mask)
        out = {}
        if self.method == "npsolver":
            u_tilde = self._refine(u_hat, b, mask)
            if self.stop_grad:
                u_tilde = u_tilde.detach()
            loss = masked_rms(u_hat - u_tilde, mask)
            out["gap"] = loss.detach()
        elif self.method == "residual":
            loss = masked_rms(res, mask)
        else:
            loss = masked_rms(u_hat - u_star, mask)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip or float("inf"))
        self.opt.step()
        if "net" in state.schedulers:
            state.schedulers["net"].step()
        out |= {"loss": self.guarded(loss.detach(), u_hat), "res_rms": masked_rms(res.detach(), mask),
                "grad_norm": gnorm, "lr": self.opt.param_groups[0]["lr"]}
        done = state.step + 1
        if done % self.eval_every == 0 or done == self.steps:
            out |= self.evaluate(final=done == self.steps) | {"data_seconds": self.data_seconds}
        return out

    # -- evaluation on the held-out set
    @torch.no_grad()
    def predict(self, f: torch.Tensor, mask: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        self.net.eval()
        return torch.cat([self.net(f[i:i + chunk], mask[i:i + chunk]) for i in range(0, len(f), chunk)])

    def evaluate(self, final: bool = False) -> dict:
        t = self.test
        f, mask, u = t["f"], t["mask"], t["u"]
        pred = self.predict(f, mask).double()
        err = (pred - u).flatten(1)
        rel = err.norm(dim=1) / u.flatten(1).norm(dim=1)
        b = self.h2 * f.double() * mask
        res = (b - apply_laplacian(pred, mask)).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)
        out = {"test_rel_l2": rel.mean(), "test_rmse": (err.pow(2).sum() / mask.sum()).sqrt(),
               "test_rel_res": res.mean()}
        for k in t["corners"].unique().tolist():
            out[f"test_rel_l2_c{k}"] = rel[t["corners"] == k].mean()
        if final:
            A = lambda v: apply_laplacian(v, mask)  # noqa: E731
            D = diagonal(mask)
            from_pred = pcg(A, b, pred, D, self.cg_max, self.cg_tol, per_sample=True)
            from_zero = pcg(A, b, None, D, self.cg_max, self.cg_tol, per_sample=True)
            out |= {"cg_iters_pred": from_pred.iterations.double().mean(),
                    "cg_iters_zero": from_zero.iterations.double().mean(),
                    "cg_converged_pred": from_pred.converged.double().mean(),
                    "example": torch.stack([pred[0, 0], u[0, 0], mask[0, 0].double()]).float()}
        return out

    def extra_state(self) -> dict:
        return {"source": self.source.state_dict()}

    def load_extra_state(self, sd: dict) -> None:
        if "source" in sd:
            self.source.load_state_dict(sd["source"])
