"""Synthetic regression problems generated from the seed: teachers whose structure a probe can read.

Every loader returns a `TeacherDataset`: a `Dataset` plus `teacher`, a dict of tensors describing the
ground truth (singular values and vectors, kink positions, a planted direction ...), so that hooks
can measure how much of the teacher a student has found. Targets are float tensors (N, out).

- `linear_teacher`: y = W* x, W* = U diag(s) V^T, whitened Gaussian inputs (saddle-to-saddle, linear).
- `kink_teacher`: univariate y = sum_k c_k relu(o_k (x - beta_k)), a piecewise-linear target with K kinks.
- `conv_teacher`: y = sum_k sum_p a_k[p] (w_k . patch_p(x)), a linear conv net with K kernels (1-D signals).
- `two_layer_teacher`: y = phi(W2 phi(W1 x)), inputs N(0, I/2), uniform +-1/sqrt(fan_in) weights
  (the student-teacher setting of curl descent).
- `single_index`: y = He_k(theta* . x) / sqrt(k!), x ~ N(0, I) (information exponent k).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import torch

from runner.data import Dataset, register
from runner.errors import OptrunError


@dataclass
class TeacherDataset(Dataset):
    teacher: dict = field(default_factory=dict)

    def to(self, device) -> "TeacherDataset":
        moved = super().to(device)
        return replace(moved, teacher={k: v.to(device) if torch.is_tensor(v) else v for k, v in self.teacher.items()})


def _positive(**kw) -> None:
    for k, v in kw.items():
        if v is None or v <= 0:
            raise OptrunError(f"dataset.{k}: expected a positive number, got {v}")


def _orthonormal(rows: int, cols: int, g: torch.Generator) -> torch.Tensor:
    """A (rows x cols) matrix with orthonormal columns (Haar-random via QR)."""
    q, r = torch.linalg.qr(torch.randn(rows, cols, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _whiten(x: torch.Tensor) -> torch.Tensor:
    """Rescale samples so that the empirical input covariance X^T X / n is exactly the identity."""
    u, _, vh = torch.linalg.svd(x, full_matrices=False)
    return u @ vh * math.sqrt(x.shape[0])


def _data(x_tr, y_tr, x_te, y_te, out: int, name: str, teacher: dict) -> TeacherDataset:
    f = lambda a: a.to(torch.float32)  # noqa: E731
    return TeacherDataset(f(x_tr), f(y_tr), f(x_te), f(y_te), n_classes=out, name=name,
                          teacher={k: f(v) if torch.is_tensor(v) else v for k, v in teacher.items()})


@register("linear_teacher")
def linear_teacher(seed: int = 0, d_in: int = 10, d_out: int = 10, singular_values: list[float] = (5, 3, 2, 1),
                   n_train: int = 100, n_test: int = 500, whiten: bool = True, noise: float = 0.0,
                   **_) -> TeacherDataset:
    """y = W* x + noise with W* = U diag(s) V^T; the training inputs are whitened (X^T X / n = I)."""
    _positive(d_in=d_in, d_out=d_out, n_train=n_train, n_test=n_test)
    s = torch.tensor(list(singular_values), dtype=torch.float64)
    if len(s) == 0 or len(s) > min(d_in, d_out) or bool((s <= 0).any()):
        raise OptrunError(f"dataset.singular_values: expected 1..{min(d_in, d_out)} positive values, "
                          f"got {list(singular_values)}")
    if whiten and n_train < d_in:
        raise OptrunError(f"dataset.n_train: whitening needs n_train >= d_in ({d_in}), got {n_train}")
    g = torch.Generator().manual_seed(seed)
    u, v = _orthonormal(d_out, len(s), g), _orthonormal(d_in, len(s), g)
    w = u @ torch.diag(s) @ v.T
    x_tr = torch.randn(n_train, d_in, generator=g, dtype=torch.float64)
    x_tr = _whiten(x_tr) if whiten else x_tr
    x_te = torch.randn(n_test, d_in, generator=g, dtype=torch.float64)
    y_tr = x_tr @ w.T + noise * torch.randn(n_train, d_out, generator=g, dtype=torch.float64)
    return _data(x_tr, y_tr, x_te, x_te @ w.T, d_out, "linear_teacher",
                 {"weight": w, "singular_values": s, "u": u, "v": v})


def _kinks(x: torch.Tensor, positions: torch.Tensor, slopes: torch.Tensor, orientations: torch.Tensor) -> torch.Tensor:
    return torch.relu(orientations * (x[:, None] - positions[None, :])) @ slopes


@register("kink_teacher")
def kink_teacher(seed: int = 0, positions: list[float] = (0.5, -0.5, 0.0), slopes: list[float] = (4.0, 2.0, 1.0),
                 orientations: list[int] | None = None, n_train: int = 64, n_test: int = 512, low: float = -1.0,
                 high: float = 1.0, **_) -> TeacherDataset:
    """Univariate piecewise-linear target y = sum_k c_k relu(o_k (x - beta_k)): a ReLU teacher with one
    kink per unit (o_k = +1 bends to the right, -1 to the left; default all +1). Training x on an
    even grid over [low, high], test x uniform (drawn from the seed). Inputs are (N, 1)."""
    _positive(n_train=n_train, n_test=n_test)
    orientations = [1] * len(positions) if orientations is None else orientations
    pos, sl, ori = (torch.tensor(list(a), dtype=torch.float64) for a in (positions, slopes, orientations))
    if not len(pos) == len(sl) == len(ori) or len(pos) == 0 or not bool((ori.abs() == 1).all()):
        raise OptrunError(f"dataset.positions / slopes / orientations: expected lists of one non-zero length, "
                          f"orientations +-1; got {list(positions)}, {list(slopes)}, {list(orientations)}")
    if not low < float(pos.min()) <= float(pos.max()) < high:
        raise OptrunError(f"dataset.positions: every kink must lie inside ({low}, {high}), got {list(positions)}")
    g = torch.Generator().manual_seed(seed)
    x_tr = torch.linspace(low, high, n_train, dtype=torch.float64)
    x_te = low + (high - low) * torch.rand(n_test, generator=g, dtype=torch.float64)
    y = lambda x: _kinks(x, pos, sl, ori)[:, None]  # noqa: E731
    return _data(x_tr[:, None], y(x_tr), x_te[:, None], y(x_te), 1, "kink_teacher",
                 {"kink_positions": pos, "kink_slopes": sl, "kink_orientations": ori, "low": low, "high": high})


def patches(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Non-overlapping patches (stride = kernel size) of signals x (N, L) -> (N, P, k)."""
    return x.unfold(1, kernel_size, kernel_size)


@register("conv_teacher")
def conv_teacher(seed: int = 0, length: int = 30, kernel_size: int = 5, strengths: list[float] = (5, 3, 2, 1),
                 n_train: int = 200, n_test: int = 500, **_) -> TeacherDataset:
    """y = sum_k sum_p a_k[p] (w_k . x_patch_p): a linear conv teacher with K kernels applied to
    non-overlapping patches (stride = kernel size, so that the position-by-tap matrix
    M = sum_k s_k a_k w_k^T is identifiable from the data), orthonormal taps and readouts, singular
    values `strengths`. Inputs are white Gaussian signals (N, 1, L); the target is a scalar."""
    _positive(length=length, kernel_size=kernel_size, n_train=n_train, n_test=n_test)
    if length % kernel_size:
        raise OptrunError(f"dataset.length: expected a multiple of kernel_size ({kernel_size}), got {length}")
    positions = length // kernel_size
    s = torch.tensor(list(strengths), dtype=torch.float64)
    if len(s) == 0 or len(s) > min(positions, kernel_size) or bool((s <= 0).any()):
        raise OptrunError(f"dataset.strengths: expected 1..{min(positions, kernel_size)} positive values, "
                          f"got {list(strengths)}")
    g = torch.Generator().manual_seed(seed)
    m = _orthonormal(positions, len(s), g) @ torch.diag(s) @ _orthonormal(kernel_size, len(s), g).T
    x_tr = torch.randn(n_train, length, generator=g, dtype=torch.float64)
    x_te = torch.randn(n_test, length, generator=g, dtype=torch.float64)
    y = lambda x: torch.einsum("npj,pj->n", patches(x, kernel_size), m)[:, None]  # noqa: E731
    return _data(x_tr[:, None], y(x_tr), x_te[:, None], y(x_te), 1, "conv_teacher",
                 {"weight": m, "singular_values": s})


_PHI = {"linear": lambda a: a, "tanh": torch.tanh, "relu": torch.relu}


@register("two_layer_teacher")
def two_layer_teacher(seed: int = 0, d_in: int = 100, hidden: int = 10, d_out: int = 1, activation: str = "linear",
                      output_activation: str = "linear", n_train: int = 250, n_test: int = 1000,
                      input_std: float = 0.5**0.5, **_) -> TeacherDataset:
    """y = phi_out(W2 phi(W1 x)) with weights uniform in +-1/sqrt(fan_in) and x ~ N(0, input_std^2 I)."""
    _positive(d_in=d_in, hidden=hidden, d_out=d_out, n_train=n_train, n_test=n_test)
    for key, name in (("activation", activation), ("output_activation", output_activation)):
        if name not in _PHI:
            raise OptrunError(f"dataset.{key}: unknown '{name}' (expected one of: {', '.join(_PHI)})")
    g = torch.Generator().manual_seed(seed)
    uni = lambda r, c: (2 * torch.rand(r, c, generator=g, dtype=torch.float64) - 1) / math.sqrt(c)  # noqa: E731
    w1, w2 = uni(hidden, d_in), uni(d_out, hidden)
    f = lambda x: _PHI[output_activation](_PHI[activation](x @ w1.T) @ w2.T)  # noqa: E731
    x_tr = input_std * torch.randn(n_train, d_in, generator=g, dtype=torch.float64)
    x_te = input_std * torch.randn(n_test, d_in, generator=g, dtype=torch.float64)
    return _data(x_tr, f(x_tr), x_te, f(x_te), d_out, "two_layer_teacher", {"w1": w1, "w2": w2})


@functools.lru_cache(maxsize=None)
def hermite_coefficients(k: int) -> tuple[float, ...]:
    """Coefficients (highest power first) of He_k / sqrt(k!), the normalised probabilists' Hermite
    polynomial (unit norm under N(0, 1)), from He_{j+1} = z He_j - j He_{j-1}. Cached: a single-index
    model's forward asks for them on every step."""
    prev, cur = [1.0], [1.0, 0.0]  # He_0, He_1 (highest power first)
    if k == 0:
        return tuple(prev)
    for j in range(1, k):
        prev, cur = cur, [a - b for a, b in zip(cur + [0.0], [0.0, 0.0] + [j * c for c in prev])]
    return tuple(c / math.sqrt(math.factorial(k)) for c in cur)


def hermite(z: torch.Tensor, k: int) -> torch.Tensor:
    """He_k(z) / sqrt(k!) by Horner's rule (few tensor ops, so autograd stays cheap)."""
    coef = hermite_coefficients(k)
    if len(coef) == 1:
        return torch.full_like(z, coef[0])
    out = z * coef[0]  # the same numbers as a tensor full of coef[0] times z, one op less
    for c in coef[1:-1]:
        out = (out + c if c else out) * z
    return out + coef[-1] if coef[-1] else out


@register("single_index")
def single_index(seed: int = 0, dim: int = 30, k: int = 3, n_train: int = 9000, n_test: int = 2000,
                 noise: float = 0.0, **_) -> TeacherDataset:
    """y = He_k(theta* . x)/sqrt(k!) + noise, x ~ N(0, I_d), theta* uniform on the sphere: a single-index
    model with information exponent k (tensor-PCA-like for the correlation loss)."""
    _positive(dim=dim, k=k, n_train=n_train, n_test=n_test)
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(dim, generator=g, dtype=torch.float64)
    theta /= theta.norm()
    x_tr = torch.randn(n_train, dim, generator=g, dtype=torch.float64)
    x_te = torch.randn(n_test, dim, generator=g, dtype=torch.float64)
    y_tr = hermite(x_tr @ theta, k) + noise * torch.randn(n_train, generator=g, dtype=torch.float64)
    return _data(x_tr, y_tr[:, None], x_te, hermite(x_te @ theta, k)[:, None], 1, "single_index",
                 {"direction": theta, "k": k})
