"""runner/solvers/lm.py against direct solves: one undamped LM step is lstsq on a linear problem, LM
converges to it from any damping, and the implicit Newton step's gradient equals jacrev of the exact argmin
(linear) or central finite differences of a converged solve (nonlinear, nonzero residual)."""
import pytest
import torch
from torch.func import jacrev

from runner.solvers.lm import implicit_step, solve

pytestmark = pytest.mark.usefixtures("one_thread")


def linear(w, A, y):
    return A @ w - y


def _linear_batch(batch=3, m=12, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, m, n, generator=g, dtype=torch.float64),
            torch.randn(batch, m, generator=g, dtype=torch.float64))


def test_one_undamped_step_is_lstsq_and_damped_lm_converges_to_it():
    A, y = _linear_batch()
    exact = torch.linalg.lstsq(A, y[..., None]).solution[..., 0]
    one = solve(linear, torch.ones(3, 4), A, y, max_iters=1, damping=0.0)
    torch.testing.assert_close(one.omega, exact, rtol=1e-10, atol=1e-10)
    assert one.iters.tolist() == [1, 1, 1]
    damped = solve(linear, torch.ones(3, 4), A, y, max_iters=10, damping=1e-3)
    torch.testing.assert_close(damped.omega, exact, rtol=1e-8, atol=1e-8)
    assert bool(damped.converged.all()) and int(damped.iters.max()) <= 10


def test_implicit_gradient_equals_jacrev_of_the_exact_argmin():
    A, y = _linear_batch(batch=1)
    A, y = A[0], y[0]

    def argmin(A, y):  # the closed form, differentiated by jacrev
        return torch.linalg.solve(A.T @ A, A.T @ y)

    def through_lm(A, y):
        w_star = solve(linear, torch.zeros(1, 4), A[None], y[None], max_iters=10, damping=0.0).omega
        return implicit_step(linear, w_star, A[None], y[None])[0]

    for hess in ("newton", "gn"):  # linear residual: J^T J is the Hessian
        f = (lambda A, y, h=hess: implicit_step(linear, solve(linear, torch.zeros(1, 4), A[None], y[None],
                                                              damping=0.0).omega, A[None], y[None], hessian=h)[0])
        for argnum in (0, 1):
            torch.testing.assert_close(jacrev(f, argnums=argnum)(A, y), jacrev(argmin, argnums=argnum)(A, y))
    torch.testing.assert_close(through_lm(A, y), argmin(A, y))


def decay(w, t, y):
    """A two-parameter exponential fit, residuals nonzero at the optimum."""
    return w[0] * torch.exp(-w[1] * t) - y


def test_implicit_gradient_matches_finite_differences_on_a_nonlinear_fit():
    t = torch.linspace(0, 2, 15, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    y = 1.5 * torch.exp(-0.7 * t) + 0.05 * torch.randn(15, generator=g, dtype=torch.float64)
    w0 = torch.tensor([[1.0, 1.0]], dtype=torch.float64)

    def w_of(ys):  # a batch of data vectors, solved to float64 resolution
        n = len(ys)
        return solve(decay, w0.expand(n, 2), t.expand(n, -1), ys, max_iters=40, tol=0.0).omega

    w_star = w_of(y[None])[0]
    y_var = y.clone().requires_grad_(True)
    w = implicit_step(decay, w_star[None], t[None], y_var[None])[0]
    torch.testing.assert_close(w.detach(), w_star, rtol=1e-9, atol=1e-9)  # the step keeps the value
    jac = torch.stack([torch.autograd.grad(w[i], y_var, retain_graph=True)[0] for i in range(2)])
    h = 1e-3  # w* is exact to ~1e-10 (cost resolution in float64): h well above that
    eye = torch.eye(15, dtype=torch.float64)
    fd = ((w_of(y + h * eye) - w_of(y - h * eye)) / (2 * h)).T
    torch.testing.assert_close(jac, fd, rtol=1e-4, atol=1e-6)
    # Gauss-Newton's J^T J drops the residual-curvature term: close here, not exact
    w_gn = implicit_step(decay, w_star[None], t[None], y_var[None], hessian="gn")[0]
    jac_gn = torch.autograd.grad(w_gn[1], y_var)[0]
    assert 0 < (jac_gn - jac[1]).norm() < 0.2 * jac[1].norm()
    # ten LM steps from w0 reach the fit (the solver budget of the paper's hard-constraint layer)
    ten = solve(decay, w0, t[None], y[None], max_iters=10)
    torch.testing.assert_close(ten.omega[0], w_star, rtol=1e-6, atol=1e-6)


def test_a_closed_form_batched_jacobian_gives_the_same_solution():
    A, y = _linear_batch(batch=4)
    auto = solve(linear, torch.zeros(4, 4), A, y, damping=0.0)
    closed = solve(lambda w, A, y: (A @ w[..., None])[..., 0] - y, torch.zeros(4, 4), A, y, damping=0.0,
                   jac=lambda w, A, y: A)
    torch.testing.assert_close(closed.omega, auto.omega)
