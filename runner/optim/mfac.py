"""M-FAC (Frantar, Kurtic, Alistarh, NeurIPS 2021): inverse-Hessian-vector products with the
empirical Fisher F = damp * I + (1/m) sum_i g_i g_i^T of m gradients, without forming F.

Sherman-Morrison applied one gradient at a time gives F^-1 x = x/damp - sum_j (v_j . x / d_j) v_j with
    v_i = g_i/damp - sum_{j<i} (v_j . g_i / d_j) v_j,   d_i = m + g_i . v_i.
Every v_i is a combination of g_1..g_i, v = A G with A lower triangular (m x m), and all dot
products v_j . g_i are entries of A K with K = G G^T, so the recursion runs in m-space.

- `StaticMFAC(G, damp)`: precompute K and V = A G once (O(d m^2)); then an IHVP costs O(d m) and one
  diagonal entry [F^-1]_qq = 1/damp - sum_j V_jq^2 / d_j costs O(m). Used for OBS pruning.
- `DynamicMFAC(m, d, damp)`: a sliding window of the last m gradients. Inserting a gradient updates
  one row and column of K (O(d m)) and refreshes A, d (O(m^3)); an IHVP is G^T (A^T ((A (G x)) / d))
  in O(d m + m^2). Used by the optimizer, which inserts the current gradient *before* its IHVP.
- `MFAC`: the optimizer, theta <- theta - lr * F^-1 (g + wd * theta) (optional momentum).

The m x m work is done in float64. `coefficients(..., method="recursion")` is the paper's loop;
"cholesky" gets the same A and d from M = m*damp*I + K = (damp L) diag(d/damp) (damp L)^T with L =
A^-1 / damp unit lower triangular, i.e. from a Cholesky factor (faster for large m).
"""
from __future__ import annotations

import time

import torch

from runner.errors import OptrunError
from runner.optim import closure_loss


def coefficients(K: torch.Tensor, damp: float, m: int, method: str = "recursion") -> tuple[torch.Tensor, torch.Tensor]:
    """A (lower triangular, v = A G) and d of the recursion, from the Gram matrix K = G G^T."""
    K = K.double()
    n = K.shape[0]
    if method == "recursion":
        A = torch.zeros(n, n, dtype=K.dtype, device=K.device)
        d = torch.zeros(n, dtype=K.dtype, device=K.device)
        for i in range(n):
            a = torch.zeros(n, dtype=K.dtype, device=K.device)
            a[i] = 1.0 / damp
            if i:
                c = (A[:i] @ K[:, i]) / d[:i]  # v_j . g_i / d_j for j < i
                a -= c @ A[:i]
            A[i], d[i] = a, m + a @ K[:, i]
        return A, d
    if method == "cholesky":
        C = torch.linalg.cholesky(K + m * damp * torch.eye(n, dtype=K.dtype, device=K.device))
        diag = C.diagonal()
        unit = C / diag  # unit lower triangular L with M = L diag(diag^2) L^T
        A = torch.linalg.solve_triangular(unit, torch.eye(n, dtype=K.dtype, device=K.device), upper=False) / damp
        return A, diag**2 / damp
    raise OptrunError(f"mfac: unknown method '{method}' (expected recursion or cholesky)")


class StaticMFAC:
    """F^-1 for a fixed set of m gradients (rows of G, shape (m, d))."""

    def __init__(self, grads: torch.Tensor, damp: float, method: str = "recursion"):
        if damp <= 0:
            raise OptrunError(f"mfac damp: expected a positive number, got {damp}")
        self.m, self.damp = grads.shape[0], damp
        G = grads.double()
        A, self.d = coefficients(G @ G.T, damp, self.m, method)
        self.V = (A @ G).to(grads.dtype)  # (m, d): the vectors v_i
        self.d = self.d.to(grads.dtype)

    def ihvp(self, x: torch.Tensor) -> torch.Tensor:
        """F^-1 x for x of shape (d,) or (d, k)."""
        coef = (self.V @ x) / (self.d if x.dim() == 1 else self.d[:, None])
        return x / self.damp - self.V.T @ coef

    def diag(self) -> torch.Tensor:
        """All diagonal entries [F^-1]_qq (O(m) each)."""
        return 1.0 / self.damp - (self.V.pow(2) / self.d[:, None]).sum(0)

    def entry(self, q: int) -> torch.Tensor:
        return 1.0 / self.damp - (self.V[:, q].pow(2) / self.d).sum()


class DynamicMFAC:
    """A sliding window over the last m gradients; `insert(g)` replaces the oldest."""

    def __init__(self, m: int, d: int, damp: float, dtype=torch.float32, device=None, method: str = "cholesky"):
        if m <= 0 or damp <= 0:
            raise OptrunError(f"mfac: expected m > 0 and damp > 0, got m={m}, damp={damp}")
        self.m, self.damp, self.method = m, damp, method
        self.G = torch.zeros(m, d, dtype=dtype, device=device)
        self.K = torch.zeros(m, m, dtype=torch.float64, device=device)
        self.ptr = 0
        self.A, self.d = coefficients(self.K, damp, m, method)

    def insert(self, g: torch.Tensor) -> None:
        i = self.ptr
        self.G[i] = g
        row = (self.G @ g).double()  # native dtype: no float64 copy of the whole window
        self.K[i, :], self.K[:, i] = row, row
        self.A, self.d = coefficients(self.K, self.damp, self.m, self.method)
        self.ptr = (i + 1) % self.m

    def ihvp(self, x: torch.Tensor) -> torch.Tensor:
        gx = (self.G @ x).double()
        coef = self.A.T @ ((self.A @ gx) / self.d)
        return x / self.damp - self.G.T @ coef.to(x.dtype)

    def state_dict(self) -> dict:
        return {"G": self.G, "K": self.K, "ptr": self.ptr}

    def load_state_dict(self, sd: dict) -> None:
        self.G.copy_(sd["G"]), self.K.copy_(sd["K"])
        self.ptr = sd["ptr"]
        self.A, self.d = coefficients(self.K, self.damp, self.m, self.method)


class MFAC(torch.optim.Optimizer):
    """theta <- theta - lr * F^-1 g over all parameters flattened (one window of the last m gradients).

    `stats` holds, after each step, the host time of insert + IHVP (ms; synchronized on CUDA) and
    cos(F^-1 g, g) (a tensor), for `hooks=optimizer_stats`."""

    def __init__(self, params, lr: float = 1e-3, m: int = 32, damp: float = 1e-4, momentum: float = 0.0,
                 weight_decay: float = 0.0, method: str = "cholesky"):
        if lr < 0 or not 0.0 <= momentum < 1.0 or weight_decay < 0:
            raise OptrunError("optimizer: expected lr >= 0, 0 <= momentum < 1 and weight_decay >= 0")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.params = [p for g in self.param_groups for p in g["params"]]
        ref = self.params[0]
        self.window = DynamicMFAC(m, sum(p.numel() for p in self.params), damp, ref.dtype, ref.device, method)
        self.stats: dict = {}

    def stat_names(self) -> list[str]:
        """The keys of `stats` (declared so that metrics.csv has them from the start)."""
        return ["ihvp_ms", "cos_dir_grad"]

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        group = self.param_groups[0]
        theta = torch.cat([p.reshape(-1) for p in self.params])
        g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params])
        if group["weight_decay"]:
            g = g + group["weight_decay"] * theta
        t0 = time.perf_counter()
        self.window.insert(g)  # the current gradient is in the window before its IHVP
        direction = self.window.ihvp(g)
        if g.is_cuda:
            torch.cuda.synchronize(g.device)
        self.stats = {"ihvp_ms": 1000 * (time.perf_counter() - t0),
                      "cos_dir_grad": torch.nn.functional.cosine_similarity(direction, g, dim=0)}
        if group["momentum"]:
            state = self.state[self.params[0]]
            buf = state.setdefault("mfac_momentum", torch.zeros_like(direction))
            buf.mul_(group["momentum"]).add_(direction)
            direction = buf
        offset = 0
        for p in self.params:
            n = p.numel()
            p.add_(direction[offset:offset + n].view_as(p), alpha=-group["lr"])
            offset += n
        return loss

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["mfac_window"] = self.window.state_dict()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        sd = dict(sd)
        window = sd.pop("mfac_window", None)
        super().load_state_dict(sd)
        if window is not None:
            self.window.load_state_dict(window)
