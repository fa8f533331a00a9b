"""The constrained bilevel problems LV-HBA is run on, in the paper's notation:

    min_{x, y}  F(x, y)   s.t.  (x, y) in C = {(x, y) : g(x, y) <= 0},  y in argmin_{y'} {f(x, y') : g(x, y') <= 0}

F is the upper level (UL), f the lower-level (LL) objective and g the LL constraints, which couple x
and y. (`runner/curvature/implicit.py` calls the UL objective f and the LL one g; here the paper's
letters are kept.) A problem gives F, f, g as functions of flat tensors, the projection onto C, its
initial point, and what the trainer logs beside the loss (`report`).

- `CoupledQuadratic`: the calibrated smoke toy of issue 17, with its exact answer.
- `SVMHyperparameters`: hyperparameter optimisation of a linear SVM with one penalty per training
  sample (the paper's HO experiment, after the official script's model), with its data loaders.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.optimize
import torch

from runner.errors import OptrunError


class CoupledQuadratic:
    """UL F = 1/2 |x - a|^2 + 1/2 |y - b|^2; LL min_y 1/2 |y - x|^2 s.t. 1^T y + 1/2 1^T x <= 1.

    The LL solution is the projection of x onto the half-space, y*(x) = x - max(0, t(x)) 1 with
    t(x) = (1.5 1^T x - 1) / n, so Phi(x) = F(x, y*(x)) is known; x* is found by L-BFGS (scipy) on Phi,
    as issue 17 asks. a, b ~ 1 + N(0, I) from the seed's data stream, which makes the constraint active
    at the answer (1.5 1^T (a + b) / 2 is about 1.5 n >> 1). One constraint: lambda and z are scalars."""

    def __init__(self, dim: int = 50):
        if dim <= 0:
            raise OptrunError(f"problem dim: expected a positive integer, got {dim}")
        self.dim_x = self.dim_y = self.n = dim
        self.m = 1

    def setup(self, generator: torch.Generator, dtype=torch.float64) -> None:
        opts = dict(generator=generator, device=generator.device, dtype=torch.float64)
        self.a = (1 + torch.randn(self.n, **opts)).to("cpu", dtype)
        self.b = (1 + torch.randn(self.n, **opts)).to("cpu", dtype)
        self.x_star = torch.as_tensor(self.solve_lbfgs(), dtype=dtype)
        self.phi_star = float(self.phi(self.x_star))

    def F(self, x, y):
        return 0.5 * (x - self.a).pow(2).sum() + 0.5 * (y - self.b).pow(2).sum()

    def f(self, x, y):
        return 0.5 * (y - x).pow(2).sum()

    def g(self, x, y):
        return (y.sum() + 0.5 * x.sum() - 1).reshape(1)

    def y_star(self, x):
        return x - torch.clamp((1.5 * x.sum() - 1) / self.n, min=0)

    def phi(self, x):
        return self.F(x, self.y_star(x))

    def solve_lbfgs(self) -> np.ndarray:
        """x* = argmin Phi by L-BFGS-B on (Phi, grad Phi) in float64, from x = 0, to a gradient of 1e-12."""
        a, b, n = self.a.double().numpy(), self.b.double().numpy(), self.n

        def fun(x):
            t = (1.5 * x.sum() - 1) / n
            y = x - max(t, 0.0)
            grad_y = y - b
            grad = (x - a) + grad_y - (1.5 / n * grad_y.sum() if t > 0 else 0.0)
            return 0.5 * ((x - a) ** 2).sum() + 0.5 * (grad_y ** 2).sum(), grad

        res = scipy.optimize.minimize(fun, np.zeros(n), jac=True, method="L-BFGS-B",
                                      options=dict(gtol=1e-12, ftol=0.0, maxiter=10000))
        return res.x

    def project(self, x, y):
        """Onto C = {1^T y + 1/2 1^T x <= 1}, a half-space with normal (1/2 1, 1)."""
        viol = y.sum() + 0.5 * x.sum() - 1
        if viol <= 0:
            return x, y
        t = viol / (0.25 * self.n + self.n)
        return x - 0.5 * t, y - t

    def init(self, dtype=torch.float64):
        """x = y = theta = 0 (feasible), lambda = z = 0."""
        zeros = torch.zeros(self.n, dtype=dtype)
        return zeros, zeros.clone(), torch.zeros(self.m, dtype=dtype)

    def report(self, x, y) -> dict:
        return {"rel_error": (x - self.x_star).norm() / self.x_star.norm(),
                "phi_gap": self.phi(x) - self.phi_star,
                "y_gap": (y - self.y_star(x)).norm()}


SPLITS = {"diabetes": (500, 150), "fourclass": (500, 150), "breast_cancer": (285, 142)}
FILES = {"diabetes": "diabetes_scale", "fourclass": "fourclass_scale"}  # the libsvm names, under data_dir
SHAPES = {"diabetes": (768, 8), "fourclass": (862, 2)}                  # of the stand-ins


def read_libsvm(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A libsvm-format file (label index:value ...) as dense (features, labels in {-1, +1})."""
    from sklearn.datasets import load_svmlight_file

    if not path.exists():
        raise OptrunError(f"lv_hba: data file {path} not found (the libsvm file '{path.name}'; "
                          "set trainer.data_dir, or trainer.stand_in=true for random data of its shape)")
    X, y = load_svmlight_file(str(path))
    y = np.where(y > 0, 1.0, -1.0)
    return np.asarray(X.todense(), dtype=np.float64), y


def load_dataset(name: str, data_dir: str | None, stand_in: bool, rng: np.random.Generator):
    """(features, labels): scikit-learn's bundled breast_cancer, or a libsvm file from `data_dir`
    (diabetes, fourclass), or random data of that file's shape (`stand_in`, for CPU checks)."""
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        X, y = load_breast_cancer(return_X_y=True)
        return X.astype(np.float64), np.where(y > 0, 1.0, -1.0)
    if name not in FILES:
        raise OptrunError(f"trainer.dataset: unknown '{name}' (expected one of: breast_cancer, {', '.join(FILES)})")
    if stand_in:
        n, d = SHAPES[name]
        X = rng.uniform(-1, 1, size=(n, d))
        return X, np.where(X @ rng.standard_normal(d) + 0.3 * rng.standard_normal(n) > 0, 1.0, -1.0)
    return read_libsvm(Path(data_dir or ".") / FILES[name])


class SVMHyperparameters:
    """Per-sample SVM penalties chosen on a validation set (the paper's linear-SVM HO experiment).

    x = c in R^n (one log-penalty per training sample), y = (w, b, xi) in R^{d + 1 + n}.
    LL  f(c, y) = 1/2 |w|^2 + 1/2 sum_i exp(c_i) xi_i^2
        g_i(c, y) = 1 - xi_i - l_i (w^T u_i + b) <= 0         (the hinge constraints; l: labels, u: features)
    UL  F(c, y) = sum_val LeakyReLU(2 sigmoid(-5 l (w^T u + b) / |w|) - 1), a smoothed 0-1 validation loss.
    As in the official script the constraints do not involve c, so C is a set of (w, b, xi) only; its
    projection is a QP, solved here through its dual (a nonnegative QP, L-BFGS-B), where the official
    script calls cvxpy/ECOS. The split (train, validation, rest = test) is a seeded shuffle, like the
    official script's; features are scaled to [-1, 1] by the training split's range (the libsvm files
    come scaled so; breast_cancer does not)."""

    def __init__(self, dataset: str = "breast_cancer", data_dir: str | None = None, stand_in: bool = False,
                 n_train: int | None = None, n_val: int | None = None, c_init: tuple = (-6.0, -5.0)):
        self.dataset, self.data_dir, self.stand_in = dataset, data_dir, stand_in
        default = SPLITS.get(dataset, (None, None))
        self.n_train, self.n_val = n_train or default[0], n_val or default[1]
        self.c_init = tuple(c_init)

    def setup(self, generator: torch.Generator, dtype=torch.float64) -> None:
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
        rng = np.random.default_rng(seed)
        X, lab = load_dataset(self.dataset, self.data_dir, self.stand_in, rng)
        if self.n_train + self.n_val >= len(lab):
            raise OptrunError(f"lv_hba: {self.dataset} has {len(lab)} samples, fewer than n_train + n_val + 1")
        order = rng.permutation(len(lab))
        X, lab = X[order], lab[order]
        tr = slice(0, self.n_train)
        lo, hi = X[tr].min(0), X[tr].max(0)
        X = 2 * (X - lo) / np.where(hi > lo, hi - lo, 1.0) - 1
        t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
        n, nv = self.n_train, self.n_val
        self.U, self.l = t(X[:n]), t(lab[:n])
        self.U_val, self.l_val = t(X[n:n + nv]), t(lab[n:n + nv])
        self.U_test, self.l_test = t(X[n + nv:]), t(lab[n + nv:])
        self.d = X.shape[1]
        self.dim_x, self.dim_y, self.m = n, self.d + 1 + n, n
        self._rng = rng
        self.baseline = self.fixed_c_baseline()

    def split(self, y):
        return y[:self.d], y[self.d], y[self.d + 1:]

    def F(self, x, y):
        w, b, _ = self.split(y)
        margin = self.l_val * (self.U_val @ w + b) / w.norm()
        return torch.nn.functional.leaky_relu(2 * torch.sigmoid(-5 * margin) - 1).sum()

    def f(self, x, y):
        w, _, xi = self.split(y)
        return 0.5 * w.pow(2).sum() + 0.5 * (x.exp() * xi.pow(2)).sum()

    def g(self, x, y):
        w, b, xi = self.split(y)
        return 1 - xi - self.l * (self.U @ w + b)

    def project(self, x, y):
        """(x, argmin |y' - y| s.t. g(y') <= 0). With M the rows (l_i u_i, l_i, e_i), the KKT point is
        y' = y + M^T mu where mu >= 0 maximises mu^T (1 - M y) - 1/2 |M^T mu|^2; M M^T = (l l^T)(U U^T + 1) + I
        is well conditioned, so L-BFGS-B reaches mu to 1e-12 quickly."""
        y64 = y.detach().double().numpy()
        U, lab = self.U.double().numpy(), self.l.double().numpy()
        w, b, xi = y64[:self.d], y64[self.d], y64[self.d + 1:]
        r = 1 - xi - lab * (U @ w + b)
        if r.max() <= 0:
            return x, y
        K = np.outer(lab, lab) * (U @ U.T + 1) + np.eye(len(lab))

        def neg_dual(mu):
            Km = K @ mu
            return 0.5 * mu @ Km - mu @ r, Km - r

        res = scipy.optimize.minimize(neg_dual, np.maximum(r, 0), jac=True, method="L-BFGS-B",
                                      bounds=[(0, None)] * len(r), options=dict(gtol=1e-12, ftol=0.0, maxiter=2000))
        mu = res.x
        for _ in range(5):  # polish: solve K_AA mu_A = r_A on the active set exactly (L-BFGS-B stops near 1e-8)
            active = (mu > 0) | (K @ mu - r < 0)
            sol = np.linalg.solve(K[np.ix_(active, active)], r[active])
            if (sol < 0).any():
                break
            mu = np.zeros_like(mu)
            mu[active] = sol
            if (K @ mu - r >= -1e-12).all():
                break
        new = np.concatenate([w + U.T @ (mu * lab), [b + mu @ lab], xi + mu])
        return x, torch.as_tensor(new, dtype=y.dtype)

    def init(self, dtype=torch.float64):
        """The official script's start: c ~ U(c_init) per sample, w = 1, b = 0, xi = 1; lambda = z = 1."""
        lo, hi = self.c_init
        c = torch.as_tensor(self._rng.uniform(lo, hi, self.n_train), dtype=dtype)
        y = torch.cat([torch.ones(self.d, dtype=dtype), torch.zeros(1, dtype=dtype), torch.ones(self.n_train, dtype=dtype)])
        return c, y, torch.ones(self.m, dtype=dtype)

    def accuracy(self, y, U, lab) -> torch.Tensor:
        w, b, _ = self.split(y)
        return 100.0 * ((lab * (U @ w + b)) > 0).double().mean()

    def report(self, x, y) -> dict:
        w, b, _ = self.split(y)
        margin_test = self.l_test * (self.U_test @ w + b) / w.norm()
        return {"val_acc": self.accuracy(y, self.U_val, self.l_val), "test_acc": self.accuracy(y, self.U_test, self.l_test),
                "val_loss": self.F(x, y) / len(self.l_val),
                "test_loss": torch.nn.functional.leaky_relu(2 * torch.sigmoid(-5 * margin_test) - 1).mean(),
                "c_mean": x.mean(), "baseline_val_acc": self.baseline["val_acc"],
                "baseline_test_acc": self.baseline["test_acc"], "baseline_c": self.baseline["c"]}

    def fixed_c_baseline(self, grid=tuple(np.linspace(-6, 6, 25))) -> dict:
        """The baseline of the claim: one penalty c for all samples, the LL solved exactly (L-BFGS on
        1/2 |w|^2 + 1/2 e^c sum_i max(0, 1 - l_i (w^T u_i + b))^2, the LL with xi eliminated) for each
        c on the grid, and the c with the best validation accuracy (ties: the smaller c) kept."""
        U, lab = self.U.double().numpy(), self.l.double().numpy()
        best = None
        for c in grid:
            def fun(v, c=c):
                w, b = v[:-1], v[-1]
                h = np.maximum(0, 1 - lab * (U @ w + b))
                gw = w - np.exp(c) * U.T @ (h * lab)
                return 0.5 * w @ w + 0.5 * np.exp(c) * h @ h, np.append(gw, -np.exp(c) * h @ lab)

            v = scipy.optimize.minimize(fun, np.zeros(self.d + 1), jac=True, method="L-BFGS-B",
                                        options=dict(gtol=1e-10, maxiter=5000)).x
            y = torch.as_tensor(np.concatenate([v, np.zeros(self.n_train)]), dtype=self.U.dtype)
            val, test = float(self.accuracy(y, self.U_val, self.l_val)), float(self.accuracy(y, self.U_test, self.l_test))
            if best is None or val > best["val_acc"]:
                best = {"c": float(c), "val_acc": val, "test_acc": test}
        return best
