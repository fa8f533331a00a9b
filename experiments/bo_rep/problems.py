"""The two problems BO-REP is run on: the quartic-UL toy (smoke) and data hyper-cleaning (paper).

A problem gives f(x, y, batch) and g(x, y, batch) as functions of two flat tensors, draws its own
batches (`sample`) from the trainer's stream, and says how far a run is from the answer
(`metrics`). The trainer asks it for four stochastic oracles, each counted:

    grad_f   (grad_x f, grad_y f)       grad_g    grad_y g
    hvp      (d2g/dy2) v                cross     (d2g/dx dy) v

By default they come from `runner.curvature.implicit` (torch.func). The toy overrides them with
closed forms (its derivatives are one line each, and `torch.func` costs more per call than the whole
toy step; the test checks both agree) and adds Gaussian noise of scale `noise` to every oracle, the
paper's bounded-variance model. Hyper-cleaning is stochastic through its minibatches.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import grad

from runner.curvature.implicit import cross_xy, hvp_yy


class Problem:
    """Oracles by torch.func on f and g; subclasses give f, g, sample and metrics."""

    noise = 0.0

    def sample(self, stream: torch.Generator, lower: bool):
        return None

    def grad_f(self, x, y, batch):
        return grad(lambda a, b: self.f(a, b, batch), argnums=(0, 1))(x, y)

    def grad_g(self, x, y, batch):
        return grad(lambda a, b: self.g(a, b, batch), argnums=1)(x, y)

    def hvp(self, x, y, v, batch):
        return hvp_yy(lambda a, b: self.g(a, b, batch), x, y, v)

    def cross(self, x, y, v, batch):
        return cross_xy(lambda a, b: self.g(a, b, batch), x, y, v)


class QuarticToy(Problem):
    """x, y in R^d. Lower g = 1/2 ||y - Bx||^2 + 1/2 ||y||^2 (1-strongly convex; y* = Bx/2, Hessian 2I);
    upper f = 1/4 sum x_i^4 + 1/2 ||y - c||^2, so Phi(x) = 1/4 sum x_i^4 + 1/2 ||Bx/2 - c||^2 has
    grad Phi = x^3 + B^T (Bx/2 - c)/2: its Hessian grows with |x|^2, i.e. with ||grad Phi||^(2/3),
    (L0, L1)-smooth in the paper's sense (unbounded smoothness), and a fixed step that is stable near
    the answer blows up from x0 = 5 * 1. B ~ N(0, 1/d), c ~ N(0, 1) from the data stream (the seed)."""

    def __init__(self, dim: int, noise: float, generator: torch.Generator, device, dtype):
        b = torch.randn(dim, dim, generator=generator, device=generator.device, dtype=torch.float64) / dim ** 0.5
        c = torch.randn(dim, generator=generator, device=generator.device, dtype=torch.float64)
        self.B, self.c, self.noise = b.to(device, dtype), c.to(device, dtype), float(noise)

    def g(self, x, y, batch=None):
        return 0.5 * (y - self.B @ x).pow(2).sum() + 0.5 * y.pow(2).sum()

    def f(self, x, y, batch=None):
        return 0.25 * x.pow(4).sum() + 0.5 * (y - self.c).pow(2).sum()

    # closed-form oracles (the test checks them against torch.func)
    def grad_f(self, x, y, batch=None):
        return x.pow(3), y - self.c

    def grad_g(self, x, y, batch=None):
        return 2 * y - self.B @ x

    def hvp(self, x, y, v, batch=None):
        return 2 * v

    def cross(self, x, y, v, batch=None):
        return -self.B.T @ v

    # the answer
    def y_star(self, x):
        return self.B @ x / 2

    def phi(self, x):
        return self.f(x, self.y_star(x))

    def grad_phi(self, x):
        return x.pow(3) + self.B.T @ (self.B @ x / 2 - self.c) / 2

    def metrics(self, x, y, z, state) -> dict:
        """loss = Phi(x) and ||grad Phi(x)|| exactly; the LL gap ||y - y*(x)|| and the linear-system gap
        ||z - z*|| with z* = (y*(x) - c)/2 (the solution of (d2g/dy2) z = grad_y f at y*)."""
        ys = self.y_star(x)
        return {"loss": self.phi(x), "grad_phi_norm": self.grad_phi(x).norm(), "y_gap": (y - ys).norm(),
                "z_gap": (z - (ys - self.c) / 2).norm()}


class HyperCleaning(Problem):
    """Data hyper-cleaning: a training set whose labels were corrupted, one weight lambda_i per
    training sample (the UL variable x = lambda), a linear softmax classifier w (the LL variable y).

        g(lambda, w) = mean_i sigmoid(lambda_i) CE(w; a_i, noisy label_i) + mu/2 ||w||^2   (train batch)
        f(lambda, w) = mean_j CE(w; a_j, label_j)                                           (clean validation batch)

    as in the paper's hyper-cleaning task and its official code (which uses an RNN on GloVe inputs
    and 1e-4 ||w|| as regulariser; here mu/2 ||w||^2 keeps the LL strongly convex, as the theory asks).
    `data` = (train inputs, noisy labels, noisy mask, val inputs, val labels, test inputs, test labels)."""

    def __init__(self, data, n_classes: int, batch_size: int, mu: float, device, dtype):
        (self.a_tr, self.l_tr, self.noisy, self.a_val, self.l_val, self.a_te, self.l_te) = (
            t.to(device, dtype) if t.is_floating_point() else t.to(device) for t in data)
        self.k, self.d = n_classes, self.a_tr.shape[1]
        self.batch_size, self.mu = batch_size, mu

    @property
    def dims(self) -> tuple[int, int]:
        """(UL dimension, LL dimension) = (training samples, classifier weights and biases)."""
        return self.a_tr.shape[0], self.k * (self.d + 1)

    def logits(self, w, a):
        return a @ w[: self.k * self.d].view(self.k, self.d).T + w[self.k * self.d:]

    def sample(self, stream: torch.Generator, lower: bool):
        """A train batch (lower) or a (validation batch, train batch) pair (upper), drawn with replacement."""
        def draw(n):
            return torch.randint(n, (self.batch_size,), generator=stream, device=stream.device).to(self.a_tr.device)
        tr = draw(self.a_tr.shape[0])
        return tr if lower else (draw(self.a_val.shape[0]), tr)

    def g(self, x, y, batch):
        idx = batch[1] if isinstance(batch, tuple) else batch
        ce = F.cross_entropy(self.logits(y, self.a_tr[idx]), self.l_tr[idx], reduction="none")
        return (torch.sigmoid(x[idx]) * ce).mean() + 0.5 * self.mu * y.pow(2).sum()

    def f(self, x, y, batch):
        idx = batch[0]
        return F.cross_entropy(self.logits(y, self.a_val[idx]), self.l_val[idx])

    def metrics(self, x, y, z, state) -> dict:
        """Full validation loss, test accuracy and the AUC of sigmoid(lambda) for clean vs noisy samples."""
        from sklearn.metrics import roc_auc_score

        with torch.no_grad():
            val = F.cross_entropy(self.logits(y, self.a_val), self.l_val)
            acc = (self.logits(y, self.a_te).argmax(1) == self.l_te).float().mean() * 100
        clean = (~self.noisy).cpu().numpy()
        auc = roc_auc_score(clean, x.detach().cpu().numpy()) if 0 < clean.sum() < clean.size else float("nan")
        return {"val_loss": val, "test_acc": acc, "weight_auc": auc,
                "weight_clean": torch.sigmoid(x[~self.noisy]).mean(), "weight_noisy": torch.sigmoid(x[self.noisy]).mean()}
