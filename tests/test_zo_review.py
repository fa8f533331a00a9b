"""zo_review: the derived dimensions against Monte-Carlo cosines at sizes the claims do not use, the
node-perturbation terms against autograd and the closed forms of the ES dimension."""
from __future__ import annotations

import math

import pytest
import torch

from experiments.zo_review.theory import averaged_dim, es_dim, mean_abs_chi, node_dims, node_terms, theory_dim
from runner.estimators.base import Backprop, Problem, cosine, flat
from runner.estimators.zeroth_order import SPSA, AntitheticES, NodePerturbation
from runner.models.mlp import MLP
from runner.trainers.supervised import loss_fn, per_example_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def _problem(inputs=12, hidden=10, classes=4, batch=6, seed=0, standardise=True):
    torch.manual_seed(seed)
    model = MLP((inputs,), classes, [hidden], "tanh").double()
    x = torch.randn(batch, inputs, dtype=torch.float64) if standardise else torch.rand(batch, inputs, dtype=torch.float64)
    y = torch.arange(batch) % classes
    return Problem(model, lambda o, t: loss_fn("ce", o, t, 1.0), lambda o, t: per_example_loss("ce", o, t, 1.0)), (x, y)


def _mean_cos(est, problem, batch, trials, seed=1):
    g = torch.Generator().manual_seed(seed)
    true = flat(Backprop().estimate(problem, batch, None, g).grads)
    return float(torch.stack([cosine(flat(est.estimate(problem, batch, None, g).grads), true) for _ in range(trials)]).mean())


def test_closed_forms():
    assert mean_abs_chi(1) == pytest.approx(math.sqrt(2 / math.pi))
    assert averaged_dim(100, 1) == pytest.approx(100)
    assert es_dim(100, 1) == pytest.approx(100)  # one pair: sign(Δf) ε, a single direction
    assert es_dim(100, 25) < es_dim(100, 5) < 100


def test_node_terms_give_the_backprop_gradient():
    problem, batch = _problem()
    true = Backprop().estimate(problem, batch, None, torch.Generator()).grads
    for name, (delta, inp) in node_terms(problem, batch).items():
        g = inp.T @ delta  # (fan_in + 1) x n_l: weights, then the bias row
        assert torch.allclose(g[:-1].T, true[f"{name}.weight"], atol=1e-10)
        assert torch.allclose(g[-1], true[f"{name}.bias"], atol=1e-10)


@pytest.mark.parametrize("est", [SPSA(c=1e-5), AntitheticES(sigma=1e-4, population=10),
                                 NodePerturbation(sigma=1e-5), NodePerturbation(sigma=1e-5, per_example=False)])
def test_derived_dim_predicts_the_mean_cosine_at_a_second_size(est):
    """A 12-10-4 net, batch 6, standardised inputs (not the claims' sizes): within 15 % over 3000 draws."""
    problem, batch = _problem()
    theory = math.sqrt(2 / (math.pi * theory_dim(est, problem, batch)))
    assert _mean_cos(est, problem, batch, 3000) == pytest.approx(theory, rel=0.15)


def test_batch_loss_node_dim_is_nodes_times_batch_only_for_orthonormal_inputs():
    """tr(JᵀJ)|δ|²/|Jδ|² = N when every layer's inputs (with the bias one) are orthonormal across the batch."""
    problem, batch = _problem(batch=3)
    batch_dim, _ = node_dims(problem, batch)
    n = (10 + 4) * 3
    assert batch_dim != pytest.approx(n, rel=0.01)  # real inputs: not the count
    terms = node_terms(problem, batch)
    trm = sum(d.shape[1] * 3 for d, _ in terms.values())  # tr M with unit-norm inputs
    d2 = sum(float((d ** 2).sum()) for d, _ in terms.values())
    g2 = sum(float((d ** 2).sum()) for d, _ in terms.values())  # |Jδ|² = |δ|² when M = I
    assert trm * d2 / g2 == n

