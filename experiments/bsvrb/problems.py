"""The paper's hyperparameter-optimization problem with m lower-level blocks (arXiv 2305.18730, Sec. 5;
the official HO code): learn one weight sigma(p_j) per training sample so that m temperature-scaled
logistic regressions, each trained on the weighted training set, do well on a validation set.

    lower block i   g_i(p, w_i) = 1/n sum_j sigma(p_j) l(y_j w_i.x_j / T_i) + lam/2 ||w_i||^2
    upper           F(p) = 1/m sum_i f_i(w_i*(p)),  f_i(w) = 1/n_val sum_k l(y_k w.x_k / T_k)

with l(a) = log(1 + exp(-a)), x with a leading 1 (bias), y in {-1, +1} and temperatures T_i. Every
derivative a method needs is here in closed form, batched over the sampled blocks (a batch of B
training / validation indices per block): the methods run thousands of iterations on two CPU cores,
where `torch.func` per block would be far too slow. `flat_f` / `flat_g` give the same problem as
functions of flat (p, w) for `runner.curvature.implicit`, which the tests use as the reference.

Data: `synthetic` (scikit-learn's make_classification, a share of the training labels flipped, for
the smoke scale) and `libsvm` (the paper's a8a / w8a read from `data_dir` with scikit-learn's
load_svmlight_file; `stand_in=True` gives random data of the same shapes).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from runner.errors import OptrunError

# (training rows, validation rows, features) of the paper's data sets; validation = the rows after the
# training rows of the libsvm training file (the official code's sizes; 18156 + 4540 = all of a8a).
LIBSVM = {"a8a": (18156, 4540, 123), "w8a": (39799, 9950, 300)}


@dataclass
class HOData:
    x_tr: torch.Tensor   # (n, d), first column 1
    y_tr: torch.Tensor   # (n,) in {-1, +1}
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_te: torch.Tensor
    y_te: torch.Tensor
    noisy: torch.Tensor  # (n,) bool: training labels that were flipped (all False for real data)

    def to(self, device, dtype) -> "HOData":
        cast = lambda t: t.to(device, dtype) if t.is_floating_point() else t.to(device)  # noqa: E731
        return HOData(*(cast(getattr(self, k)) for k in self.__dataclass_fields__))


def _with_bias(x: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    return torch.cat([torch.ones(len(x), 1, dtype=x.dtype), x], 1)


def _signs(y) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    return torch.where(y > 0, 1.0, -1.0).to(torch.float64)


def synthetic(seed: int, n_train: int = 2000, n_val: int = 500, n_test: int = 500, n_features: int = 20,
              flip: float = 0.1) -> HOData:
    """make_classification (standardized), `flip` of the training labels flipped; validation and test clean."""
    from sklearn.datasets import make_classification

    n = n_train + n_val + n_test
    x, y = make_classification(n_samples=n, n_features=n_features, n_informative=n_features // 2, flip_y=0.0,
                               class_sep=1.0, random_state=seed)
    x = (x - x[:n_train].mean(0)) / x[:n_train].std(0)
    y = _signs(y)
    rng = np.random.default_rng(seed)
    noisy = torch.zeros(n_train, dtype=torch.bool)
    noisy[torch.as_tensor(rng.choice(n_train, int(round(flip * n_train)), replace=False))] = True
    y_tr = torch.where(noisy, -y[:n_train], y[:n_train])
    xb = _with_bias(x)
    a, b = n_train, n_train + n_val
    return HOData(xb[:a], y_tr, xb[a:b], y[a:b], xb[b:], y[b:], noisy)


def libsvm(name: str, data_dir: str, stand_in: bool = False, seed: int = 0, sizes: tuple | None = None) -> HOData:
    """a8a / w8a from `data_dir` (libsvm names `<name>` and `<name>.t`, or the official code's
    `<name>_training.txt` / `<name>_testing.txt`). Training = the first rows, validation = the next
    ones (disjoint; see the card), test = the test file. `sizes` = (train, val, features) overrides
    the paper's (tests)."""
    if name not in LIBSVM:
        raise OptrunError(f"trainer.dataset: unknown '{name}' (expected one of: {', '.join(LIBSVM)})")
    n_tr, n_val, n_feat = sizes or LIBSVM[name]
    if stand_in:
        g = torch.Generator().manual_seed(seed)
        x = (torch.rand(n_tr + n_val + 512, n_feat, generator=g) < 0.1).double()
        y = torch.where(torch.rand(len(x), generator=g) < 0.25, 1.0, -1.0).double()
        xb = _with_bias(x.numpy())
        return HOData(xb[:n_tr], y[:n_tr], xb[n_tr:n_tr + n_val], y[n_tr:n_tr + n_val], xb[n_tr + n_val:],
                      y[n_tr + n_val:], torch.zeros(n_tr, dtype=torch.bool))
    from sklearn.datasets import load_svmlight_file

    root = Path(data_dir)
    pairs = [(root / name, root / f"{name}.t"), (root / f"{name}_training.txt", root / f"{name}_testing.txt")]
    found = next(((a, b) for a, b in pairs if a.exists() and b.exists()), None)
    if found is None:
        raise OptrunError(f"trainer.data_dir: no {name} in {root} (expected {name} and {name}.t in libsvm "
                          f"format, from https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/)")
    x, y = load_svmlight_file(str(found[0]), n_features=n_feat)
    x_te, y_te = load_svmlight_file(str(found[1]), n_features=n_feat)
    if x.shape[0] < n_tr + n_val:
        raise OptrunError(f"{found[0]}: {x.shape[0]} rows, expected at least {n_tr + n_val}")
    xb, yb = _with_bias(x.toarray()), _signs(y)
    return HOData(xb[:n_tr], yb[:n_tr], xb[n_tr:n_tr + n_val], yb[n_tr:n_tr + n_val], _with_bias(x_te.toarray()),
                  _signs(y_te), torch.zeros(n_tr, dtype=torch.bool))


class Point:
    """The per-sample factors of g at one point (p, w) on training samples `idx`, which grad_g, hess_g,
    hvp_g and cross_rows share: a method asks for several of them at the same point every iteration,
    and computing the factors once (instead of once per quantity) gives the same numbers in fewer ops."""

    def __init__(self, problem: "MultiBlockHO", p, w, blocks, idx):
        self.xs, self.c, self.a = problem._parts(w, blocks, idx, problem.data.x_tr, problem.data.y_tr)
        self.sp, self.sna = torch.sigmoid(p[idx]), torch.sigmoid(-self.a)   # sigma(p_j), sigma(-a) = -l'(a)
        self._curv = None

    @property
    def curv(self) -> torch.Tensor:
        """sigma(p_j) l''(a) c^2, the per-sample weight of the Hessian (computed on first use)."""
        if self._curv is None:
            self._curv = self.sp * torch.sigmoid(self.a) * self.sna * self.c * self.c
        return self._curv


class MultiBlockHO:
    """The m-block problem on `data` with temperatures `temps` (m,) and LL regularizer `lam`.

    Batched pieces take `blocks` (I,) block indices, `w` (I, d) their variables and `idx` (I, B) sample
    indices (training for g, validation for f); each returns per-block quantities averaged over the B
    samples, as the official code's per-block estimators. The g pieces accept `at = self.point(p, w,
    blocks, idx)`, the factors they share at that point, computed once."""

    def __init__(self, data: HOData, temps: torch.Tensor, lam: float):
        self.data, self.temps, self.lam = data, temps, lam
        self.n, self.d = data.x_tr.shape
        self.m = len(temps)
        self._lam_eye = None

    def point(self, p, w, blocks, idx) -> Point:
        return Point(self, p, w, blocks, idx)

    # -- per-sample factors: a = y (w.x) / T, l(a) = softplus(-a), l' = -sigmoid(-a), l'' = sigmoid(a) sigmoid(-a)
    def _parts(self, w, blocks, idx, x, y):
        xs, c = x[idx], y[idx] / self.temps[blocks, None]        # (I, B, d), (I, B)
        a = c * torch.einsum("ibd,id->ib", xs, w)
        return xs, c, a

    def grad_g(self, p, w, blocks, idx, at: Point | None = None):
        at = self.point(p, w, blocks, idx) if at is None else at
        coef = -at.sp * at.sna * at.c
        return torch.einsum("ib,ibd->id", coef, at.xs) / idx.shape[1] + self.lam * w

    def hess_g(self, p, w, blocks, idx, at: Point | None = None):
        at = self.point(p, w, blocks, idx) if at is None else at
        # einsum("ib,ibd,ibe->ide", curv, xs, xs) contracted as opt_einsum's path does it, (curv xs) then
        # with xs, but without the path search that einsum runs on every call of three operands
        return torch.einsum("ibd,ibe->ide", at.curv[..., None] * at.xs, at.xs) / idx.shape[1] + self.lam_eye(w)

    def lam_eye(self, w) -> torch.Tensor:
        """lam I in w's dtype and device, made once (not on every Hessian)."""
        if self._lam_eye is None or self._lam_eye.dtype != w.dtype or self._lam_eye.device != w.device:
            self._lam_eye = self.lam * torch.eye(self.d, dtype=w.dtype, device=w.device)
        return self._lam_eye

    def hvp_g(self, p, w, blocks, idx, v, at: Point | None = None):
        at = self.point(p, w, blocks, idx) if at is None else at
        return torch.einsum("ib,ibd->id", at.curv * torch.einsum("ibd,id->ib", at.xs, v), at.xs) / idx.shape[1] + self.lam * v

    def cross_rows(self, p, w, blocks, idx, at: Point | None = None):
        """(I, B, d): the nonzero rows of d^2 g_i / dp dw_i (row j belongs to training sample idx[i, j])."""
        at = self.point(p, w, blocks, idx) if at is None else at
        coef = -at.sp * (1 - at.sp) * at.sna * at.c
        return coef[..., None] * at.xs / idx.shape[1]

    def cross(self, p, w, blocks, idx, z, at: Point | None = None):
        """sum_i (d^2 g_i / dp dw_i) z_i, an n-vector (zero off the sampled rows)."""
        rows = torch.einsum("ibd,id->ib", self.cross_rows(p, w, blocks, idx, at), z)
        return torch.zeros(self.n, dtype=z.dtype, device=z.device).index_add_(0, idx.reshape(-1), rows.reshape(-1))

    def grad_f(self, w, blocks, idx):
        xs, c, a = self._parts(w, blocks, idx, self.data.x_val, self.data.y_val)
        return torch.einsum("ib,ibd->id", -torch.sigmoid(-a) * c, xs) / idx.shape[1]

    # -- full-data values, for the logs
    def f_full(self, W, x=None, y=None) -> torch.Tensor:
        """Mean over blocks and samples of l(y w_i.x / T_i): the UL validation loss (test loss with x, y = test)."""
        x = self.data.x_val if x is None else x
        y = self.data.y_val if y is None else y
        a = (x @ W.T) * y[:, None] / self.temps[None, :]
        return F.softplus(-a).mean()

    def g_full(self, p, W, reg: bool = True) -> torch.Tensor:
        """sum_i g_i(p, w_i) over all training samples (the official `g_eval`; without the regularizer with reg=False)."""
        a = (self.data.x_tr @ W.T) * self.data.y_tr[:, None] / self.temps[None, :]
        loss = (torch.sigmoid(p)[:, None] * F.softplus(-a)).mean(0).sum()
        return loss + (0.5 * self.lam * W.pow(2).sum() if reg else 0.0)

    def flat_f(self, p: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.f_full(w.reshape(self.m, self.d))

    def flat_g(self, p: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.g_full(p, w.reshape(self.m, self.d))


def auc(score: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve of `score` for the `positive` samples (ties counted half)."""
    pos, neg = score[positive], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = torch.cat([pos, neg]).double()
    ranks = torch.empty_like(order)
    srt, idx = torch.sort(order)
    r = torch.arange(1, len(order) + 1, dtype=torch.float64, device=order.device)
    uniq, inv, counts = torch.unique_consecutive(srt, return_inverse=True, return_counts=True)
    mean_rank = torch.zeros(len(uniq), dtype=torch.float64, device=order.device).index_add_(0, inv, r) / counts
    ranks[idx] = mean_rank[inv]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
