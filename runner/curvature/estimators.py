"""Spectral estimators on a symmetric linear operator given only by products `matvec(V) -> H V`
(V of shape (k, P), one vector per row).

- `lanczos`: extreme eigenpairs, full reorthogonalisation, stops when the top-k Ritz residuals
  ||H u - theta u|| fall below `tol * |theta_1|` (which bounds the eigenvalue error by the same
  amount, and in practice by its square over the spectral gap). Warm-starts from any vector.
- `trace_frobenius`: tr(H) and ||H||_F with standard errors, by splitting H with an orthonormal
  basis Q (P x m): tr(H) = tr(Q^T H Q) + E[u^T H u] and ||H||_F^2 = ||H Q||_F^2 + E||H u||^2 with
  u = (I - Q Q^T) g, g Rademacher. The first terms are exact; only the residual is sampled, so the
  error shrinks with the part of the spectrum Q leaves out. Q is
    * empty: plain Hutchinson,
    * orth(H S) for a Rademacher sketch S: Hutch++ (Meyer, Musco, Musco, Woodruff 2021),
    * a Lanczos basis: Q^T H Q = T (tridiagonal) and ||H Q||_F^2 = ||T||_F^2 + beta_m^2 come free
      from the eigenvalue run ("deflated Hutchinson"), the cheapest when a few eigenvalues dominate.
  Standard errors are those of the sampled residual (conditional on Q).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LanczosResult:
    values: torch.Tensor  # top-k Ritz values, descending (float64)
    vectors: torch.Tensor  # (k, P) Ritz vectors, unit norm
    residuals: torch.Tensor  # ||H u_i - theta_i u_i|| for the top-k
    basis: torch.Tensor  # (m, P) orthonormal Lanczos vectors
    T: torch.Tensor  # (m, m) tridiagonal projection Q^T H Q (float64)
    beta: float  # the last off-diagonal: ||H Q - Q T||_F
    converged: bool
    converged_at: int  # products needed to meet the tolerance (<= steps when min_iter asks for more)

    @property
    def steps(self) -> int:
        return len(self.basis)

    @property
    def bottom(self) -> float:
        """The smallest Ritz value (an upper bound on lambda_min, not converged in general)."""
        return float(torch.linalg.eigvalsh(self.T)[0])


def _orthogonalize(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Classical Gram-Schmidt, twice (enough in floating point to keep the basis orthonormal)."""
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def lanczos(matvec: MatVec, v0: torch.Tensor, k: int = 1, tol: float = 1e-3, max_iter: int = 100,
            min_iter: int = 1) -> LanczosResult:
    """Top-k eigenpairs of the symmetric operator, Krylov space started at `v0` (any nonzero vector).
    Runs at least `min_iter` steps (a bigger basis for `lanczos_deflated`) and at most `max_iter`."""
    dim = v0.numel()
    max_iter = min(max_iter, dim)
    q = v0.reshape(-1) / v0.norm()
    basis = q[None]
    alphas, betas = [], []
    converged, converged_at = False, None
    while True:
        w = matvec(q[None])[0]
        alphas.append(float(q @ w))
        w = _orthogonalize(w, basis)
        beta = float(w.norm())
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        theta, s = torch.linalg.eigh(T)
        top = min(k, len(alphas))
        res = (beta * s[-1, -top:].abs()).flip(0)
        scale = max(abs(float(theta[-1])), 1e-30)
        m = len(alphas)
        ok = m >= min(k, dim) and bool((res <= tol * scale).all())
        if ok and converged_at is None:
            converged_at = m
        if (ok and m >= min_iter) or m >= max_iter or beta <= 1e-12 * scale:
            converged = ok or beta <= 1e-12 * scale  # a tiny beta means an invariant subspace: exact
            break
        betas.append(beta)
        q = w / beta
        basis = torch.cat([basis, q[None]])
    coeff = s[:, -top:].flip(1).to(basis.dtype)  # (m, top), descending
    vectors = (basis.T @ coeff).T
    return LanczosResult(values=theta[-top:].flip(0), vectors=vectors / vectors.norm(dim=1, keepdim=True),
                         residuals=res, basis=basis, T=T, beta=beta, converged=converged,
                         converged_at=converged_at if converged_at is not None else len(alphas))


@dataclass
class TraceEstimate:
    trace: float
    trace_se: float
    frobenius: float
    frobenius_se: float
    n_matvec: int  # products spent here (excluding a Lanczos basis handed in)


def rademacher(n: int, dim: int, generator: torch.Generator, dtype=torch.float32, device=None) -> torch.Tensor:
    device = device or generator.device
    return (torch.randint(0, 2, (n, dim), generator=generator, device=device) * 2 - 1).to(dtype)


def trace_frobenius(matvec: MatVec, dim: int, probes: int, generator: torch.Generator, *,
                    basis: torch.Tensor | None = None, basis_trace: float = 0.0, basis_fro2: float = 0.0,
                    dtype=torch.float32, device=None) -> TraceEstimate:
    """tr(H), ||H||_F and their standard errors from an exact part on `basis` (orthonormal rows,
    with tr(Q^T H Q) = basis_trace and ||H Q||_F^2 = basis_fro2) plus `probes` residual probes."""
    device = device or generator.device
    g = rademacher(probes, dim, generator, dtype, device)
    # the probes live on the generator's device; the operator's device may differ
    g = g.to(basis.device if basis is not None else device)
    u = g - (g @ basis.T) @ basis if basis is not None and len(basis) else g
    hu = matvec(u) if probes else u
    t = (u * hu).sum(1).double()
    f = (hu * hu).sum(1).double()
    se = lambda a: float(a.std(unbiased=True) / math.sqrt(len(a))) if len(a) > 1 else math.inf  # noqa: E731
    trace = basis_trace + (float(t.mean()) if probes else 0.0)
    fro2 = basis_fro2 + (float(f.mean()) if probes else 0.0)
    fro = math.sqrt(max(fro2, 0.0))
    return TraceEstimate(trace=trace, trace_se=se(t), frobenius=fro,
                         frobenius_se=se(f) / (2 * fro) if fro > 0 else math.inf, n_matvec=probes)


def hutchpp(matvec: MatVec, dim: int, n_matvec: int, generator: torch.Generator, dtype=torch.float32,
            device=None) -> TraceEstimate:
    """Hutch++ with a budget of `n_matvec` products: a third sketch H S, a third for H Q, a third
    (at least one) residual probes."""
    s = max(n_matvec // 3, 1)
    probes = max(n_matvec - 2 * s, 1)
    sketch = rademacher(s, dim, generator, dtype, device)
    q = torch.linalg.qr(matvec(sketch).T)[0].T  # (s, P) orthonormal
    hq = matvec(q)
    out = trace_frobenius(matvec, dim, probes, generator, basis=q, basis_trace=float((q * hq).sum()),
                          basis_fro2=float((hq * hq).sum()), dtype=dtype, device=device)
    out.n_matvec += 2 * s
    return out


def lanczos_deflated(matvec: MatVec, result: LanczosResult, probes: int, generator: torch.Generator,
                     dtype=torch.float32, device=None) -> TraceEstimate:
    """Trace and Frobenius norm deflated by a Lanczos basis: the exact parts come from T and beta."""
    T = result.T
    return trace_frobenius(matvec, result.basis.shape[1], probes, generator, basis=result.basis,
                           basis_trace=float(T.trace()), basis_fro2=float((T * T).sum()) + result.beta ** 2,
                           dtype=dtype, device=device)


@dataclass
class TrackResult:
    value: float  # the top Ritz value theta_1 (a lower bound on lambda_max)
    vectors: torch.Tensor  # (k, P) the top-k Ritz vectors, unit norm (the next call's warm start)
    values: torch.Tensor  # (k,) their Ritz values, descending (float64)
    residual: float  # ||R||_F, R = H U - U Theta over the top-k Ritz pairs
    bound: float  # the error bound the stopping test used: ||R||^2 / gap (quadratic) or ||r_1|| (no gap known)
    next_value: float | None  # the (k+1)-th Ritz value of the subspace (a lower bound on lambda_{k+1})
    n_matvec: int  # products spent
    converged: bool

    @property
    def vector(self) -> torch.Tensor:
        return self.vectors[0]


def _ritz(basis: torch.Tensor, hbasis: torch.Tensor, k: int):
    """The top-k Ritz pairs of the subspace (descending), H times them, their residual norms, theta_{k+1}."""
    g = basis.double() @ hbasis.double().T
    theta, s = torch.linalg.eigh((g + g.T) / 2)
    theta, s = theta.flip(0), s.flip(1)
    c = s[:, :k].T.to(basis.dtype)
    u, hu = c @ basis, c @ hbasis
    nu = u.norm(dim=1, keepdim=True)
    u, hu = u / nu, hu / nu
    res = (hu - theta[:k, None].to(u.dtype) * u).norm(dim=1).double()
    return theta, u, hu, res


def track_top(matvec: MatVec, v0: torch.Tensor, extra: tuple[torch.Tensor, ...] = (), tol: float = 1e-3,
              lambda_next: float | None = None, gap_safety: float = 0.5, max_iter: int = 30,
              update: str = "fail") -> TrackResult:
    """lambda_max from a warm start: Rayleigh-Ritz on the span of the k rows of `v0` (the last call's
    top-k Ritz vectors; k = 1 for a single vector), plus the `extra` directions (e.g. the last update
    theta_t - theta_{t-1}: at the start with `update="start"`, at the first failed test with
    `update="fail"`, never with `"off"`), expanded by the largest Ritz residual of the top k (Lanczos
    continuation; every product is kept, so the Ritz pairs are the best in the subspace) until the
    error bound is below `tol * theta_1`.

    The bound is quadratic in the residual: 0 <= lambda_1 - theta_1 <= ||R||^2 / (theta_k - lambda_{k+1})
    for the top-k Ritz pairs with block residual R (Kato-Temple for k = 1; for k > 1 a subspace version,
    e.g. Mathias 1998, valid when theta_k > lambda_{k+1}). lambda_{k+1} is estimated by
    max(`lambda_next`, the subspace's (k+1)-th Ritz value) and the gap shrunk by `gap_safety` (a Ritz
    value is a lower bound on the eigenvalue, so the gap it gives is an overestimate). Without a usable
    gap (no estimate, or ||R|| not small against it) the plain residual ||r_1|| is the bound. With a
    block, the single-pair bound r_1^2 / (theta_1 - theta_2) (theta_2 tracked, so a close estimate of
    lambda_2) is used when it is smaller: the block bound guards crossings, the single one the rest.
    A block k >= 2 follows the top eigenvalue through crossings with the second (at the edge of
    stability the top two swap often); a single vector follows one eigenvector, past a crossing too."""
    v0 = v0.reshape(-1, v0.shape[-1])
    k, dim = v0.shape
    max_iter = max(min(max_iter, dim), k)
    basis = torch.empty(0, dim, dtype=v0.dtype, device=v0.device)
    hbasis = torch.empty_like(basis)
    n = 0

    def add(vs: list[torch.Tensor]) -> int:
        nonlocal basis, hbasis, n
        new: list[torch.Tensor] = []
        for w in vs:
            w = w.reshape(-1).to(basis.dtype)
            scale = float(w.norm())
            if scale == 0 or not math.isfinite(scale):
                continue
            w = _orthogonalize(w / scale, torch.cat([basis, *[q[None] for q in new]]))
            nw = float(w.norm())
            if nw > 1e-6:  # else (numerically) in the span already
                new.append(w / nw)
        new = new[: max(max_iter - len(basis), 0)]
        if new:
            q = torch.stack(new)
            basis, hbasis = torch.cat([basis, q]), torch.cat([hbasis, matvec(q)])
            n += len(q)
        return len(new)

    pending = list(extra) if update != "off" else []
    add(list(v0) + (pending if update == "start" else []))
    if update == "start":
        pending = []
    while True:
        theta, u, hu, res = _ritz(basis, hbasis, k)
        kk = len(u)
        th = float(theta[0])
        nxt = float(theta[kk]) if len(theta) > kk else None
        lam = max([v for v in (lambda_next, nxt) if v is not None], default=None)
        gap = gap_safety * (float(theta[kk - 1]) - lam) if lam is not None else 0.0
        r2 = float((res ** 2).sum())
        bound = r2 / gap if gap > 0 and math.sqrt(r2) < gap else float(res[0])
        worst = int(res.argmax())
        if len(theta) > 1:  # Kato-Temple for the top pair alone, lambda_2 estimated by the second Ritz value
            lam2 = float(theta[1]) if kk > 1 else lam
            gap1 = gap_safety * (th - lam2) if lam2 is not None else 0.0
            r1 = float(res[0])
            if gap1 > 0 and r1 < gap1:
                bound = min(bound, r1 * r1 / gap1)
        # expanding by the largest residual keeps the second pair good too (expanding by r_1 only, when the
        # single-pair bound applies, took 3.9 instead of 4.6 products per step at the edge of stability but
        # missed a crossing: 1.1e-2 error)
        ok = bound <= tol * max(abs(th), 1e-30)
        if ok or len(basis) >= max_iter:
            break
        if add([hu[worst] - float(theta[worst]) * u[worst]] + pending) == 0:  # invariant subspace: exact
            ok, bound = True, 0.0
            break
        pending = []
    return TrackResult(value=th, vectors=u, values=theta[:kk], residual=math.sqrt(r2), bound=bound,
                       next_value=nxt, n_matvec=n, converged=ok)
