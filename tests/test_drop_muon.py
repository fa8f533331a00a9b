"""Muon for conv nets, randomized progressive training (Drop-Muon), its hooks and claims."""
import pandas as pd
import pytest
import torch

from experiments.drop_muon import claims as dm_claims
from runner import experiments
from runner.dispatch import build, execute
from runner.engine import Engine
from runner.errors import OptrunError
from runner.models import param_layers
from runner.models.cnn import CNN
from runner.optim.muon import Muon, newton_schulz
from runner.report.runs import load_runs
from runner.results import MetricsWriter
from runner.trainers.supervised import SupervisedTrainer


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


TINY = ["experiment=drop_muon", "device=cpu", "trainer.steps=12", "model.channels=[4,8,8]", "hooks.test_eval.every=4",
        "hooks.update_norms.every=1"]


def test_newton_schulz_orthogonalizes():
    g = torch.randn(48, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = torch.linalg.svdvals(newton_schulz(g))
    assert s.min() > 0.6 and s.max() < 1.25
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    assert torch.nn.functional.cosine_similarity(newton_schulz(g).flatten(), (u @ vh).flatten(), dim=0) > 0.97


def _two_steps(opt_fn, params, grads):
    opt = opt_fn(params)
    for g in grads:
        for p, gp in zip(params, g):
            p.grad = gp.clone()
        opt.step()
    return [p.detach().clone() for p in params]


def test_muon_matches_torch_muon_on_matrices_and_adamw_elsewhere():
    gen = torch.Generator().manual_seed(1)
    shapes = [(16, 8), (8,)]
    init = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(3)]
    ours = _two_steps(lambda ps: Muon(ps, lr=0.05, weight_decay=0.1, adamw_lr=0.01, adamw_weight_decay=0.01),
                      [p.clone().requires_grad_() for p in init], grads)
    ref_m = _two_steps(lambda ps: torch.optim.Muon(ps, lr=0.05, weight_decay=0.1), [init[0].clone().requires_grad_()],
                       [[g[0]] for g in grads])
    ref_a = _two_steps(lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.01),
                       [init[1].clone().requires_grad_()], [[g[1]] for g in grads])
    # torch orthogonalizes in bfloat16, we in float32: equal to bf16 precision
    assert torch.allclose(ours[0], ref_m[0], atol=3e-3)
    assert torch.allclose(ours[1], ref_a[0], atol=1e-6)


def test_conv_kernels_are_orthogonalized_as_out_by_in_k_k():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(6, 3, 3, 3, generator=gen)
    g = torch.randn(6, 3, 3, 3, generator=gen)
    conv = _two_steps(lambda ps: Muon(ps, lr=0.1, momentum=0.0, nesterov=False), [w.clone().requires_grad_()], [[g]])
    mat = _two_steps(lambda ps: Muon(ps, lr=0.1, momentum=0.0, nesterov=False),
                     [w.reshape(6, 27).clone().requires_grad_()], [[g.reshape(6, 27)]])
    assert torch.allclose(conv[0].reshape(6, 27), mat[0], atol=1e-6)


def test_cnn_pool_and_linear_head():
    m = CNN((1, 8, 8), 10, channels=[4, 8, 16], pool=True, hidden=None)
    assert [n for n, _ in param_layers(m)] == ["features.0", "features.3", "features.6", "head.0"]
    assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert CNN((1, 40), 10, channels=[4], pool=True)(torch.zeros(3, 1, 40)).shape == (3, 10)


def test_progressive_step_freezes_weights_and_momentum_below_the_start_layer(make_cfg):
    state, trainer, hooks = build(make_cfg(*TINY))
    trainer.phases(state)
    layers = trainer.layers
    for _ in range(3):  # momentum buffers exist for every layer
        trainer.dist = torch.eye(len(layers))[0].double()
        trainer.step(state)
    trainer.dist = torch.eye(len(layers))[2].double()  # s = 3: layers 1, 2 frozen
    before = [[p.detach().clone() for p in ps] for ps in layers]
    bufs = [state.optimizer.state[ps[0]]["momentum_buffer"].clone() for ps in layers]
    m = trainer.step(state)
    assert m["start_layer"] == 3 and m["layers_updated"] == len(layers) - 2
    for i, ps in enumerate(layers):
        same = all(torch.equal(p, b) for p, b in zip(ps, before[i]))
        buf_same = torch.equal(state.optimizer.state[ps[0]]["momentum_buffer"], bufs[i])
        assert same == buf_same == (i < 2), i
        assert all(p.requires_grad for p in ps) and (ps[0].grad is None) == (i < 2)


def test_full_sampling_is_ordinary_training(make_cfg, tmp_path):
    def final(plain: bool):
        state, trainer, _ = build(make_cfg(*TINY, "trainer.sampling=full"))
        if plain:
            trainer = SupervisedTrainer(steps=12, batch_size=trainer.batch_size)
        Engine(trainer, [], MetricsWriter(tmp_path / "m.csv"), progress=False).run(state)
        return [p.detach().clone() for p in state.model.parameters()]

    full, plain = final(False), final(True)
    assert all(torch.equal(a, b) for a, b in zip(full, plain))


def test_bad_sampling_is_one_line(make_cfg):
    with pytest.raises(Exception, match="trainer.sampling: unknown 'sometimes'"):  # Hydra wraps it; optrun unwraps
        build(make_cfg(*TINY, "trainer.sampling=sometimes"))
    state, trainer, _ = build(make_cfg(*TINY, "trainer.sampling=custom", "trainer.probs=[1,1]"))
    with pytest.raises(OptrunError, match="one per layer"):
        trainer.phases(state)


def test_scales_compose_the_papers_setup(make_cfg):
    cfg = make_cfg("experiment=drop_muon")
    assert cfg.dataset.name == "digits" and list(cfg.model.channels) == [32, 64, 128] and cfg.trainer.steps == 300
    cfg = make_cfg("experiment=drop_muon", "scale=paper")
    assert cfg.dataset.name == "mnist" and list(cfg.model.channels) == [64, 128, 256] and cfg.model.pool
    assert cfg.trainer.batch_size == 8192 and cfg.optimizer.lr == 0.1 and cfg.threads is None
    assert cfg.trainer._target_.endswith("ProgressiveTrainer") and cfg.optimizer._target_.endswith("Muon")
    for scale in ("smoke", "paper"):
        (study,) = experiments.studies("drop_muon", scale).values()
        assert study["arms"] == {"muon": ["trainer.sampling=full"], "drop_muon": ["trainer.sampling=uniform"]}


def test_claims_from_a_tiny_sweep(make_cfg, tmp_path):
    for s, arm in (("full", "muon"), ("uniform", "drop_muon")):
        execute(make_cfg(*TINY, "trainer.steps=40", f"trainer.sampling={s}", "study=digits_cnn", f"arm={arm}"),
                tmp_path / s)
    runs, _ = load_runs(tmp_path)
    df = next(r for r in runs if r.cfg["trainer"]["sampling"] == "uniform").metrics
    assert {"start_layer", "layers_updated", "layer_backward", "train_time_s", dm_claims.TEST_ACC,
            "update_norms/update_norm_1"} <= set(df)
    assert dm_claims.norm_cols(df) == [f"update_norms/update_norm_{i}" for i in range(1, 5)]
    assert df.layer_backward.iloc[-1] == df.layers_updated.sum()  # log_every=5, update_norms every step: all rows
    assert dm_claims.frozen_update_max(df, {}) == 0.0
    rows = {r["name"]: r for r in dm_claims.cross_run_claims(runs)}
    assert set(rows) == {"cheaper steps", "layer backward to target", "wall-clock to target", "final accuracy"}
    assert all(r["n"] == 1 for r in rows.values())
    assert {r["kind"] for r in rows.values()} == {"headline", "supporting"}
    drop = next(r for r in runs if r.arm == "drop_muon")
    assert [c["kind"] for c in drop.summary["claims"]] == ["check", "check"]
    muon = next(r for r in runs if r.cfg["trainer"]["sampling"] == "full").metrics
    assert muon.layer_backward.iloc[-1] == 40 * 4
    assert pd.notna(rows["final accuracy"]["measured"]) and pd.notna(rows["cheaper steps"]["measured"])
