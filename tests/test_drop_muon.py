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
from runner.trainers.progressive import layer_costs, layer_macs, newton_schulz_macs, step_flops
from runner.trainers.supervised import SupervisedTrainer


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


TINY = ["experiment=drop_muon", "device=cpu", "trainer.steps=12", "model.channels=[4,8,8]", "hooks.test_eval.every=4",
        "hooks.update_norms.every=1", "hooks.train_eval.dense_steps=5", "hooks.train_eval.every=3"]


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
        state, trainer, _ = build(make_cfg(*TINY, "trainer.sampling=full", "trainer.budget=steps"))
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
    assert cfg.trainer.budget == "flops" and cfg.hooks.train_eval.max_samples == 512
    cfg = make_cfg("experiment=drop_muon", "scale=paper")
    assert cfg.dataset.name == "mnist" and list(cfg.model.channels) == [64, 128, 256] and cfg.model.pool
    assert cfg.trainer.batch_size == 8192 and cfg.optimizer.lr == 0.1 and cfg.threads is None
    assert cfg.trainer._target_.endswith("ProgressiveTrainer") and cfg.optimizer._target_.endswith("Muon")
    assert cfg.trainer.budget == "flops" and cfg.schedule._target_.endswith("CosineAnnealingLR")
    assert cfg.hooks.train_eval._target_.endswith("TrainSubsetEval") and cfg.hooks.train_eval.max_samples == 10000
    for scale in ("smoke", "paper"):
        (study,) = experiments.studies("drop_muon", scale).values()
        assert study["arms"] == {"muon": ["trainer.sampling=full"], "drop_muon": ["trainer.sampling=uniform"]}


def test_flops_of_known_layers_by_hand():
    m = CNN((1, 8, 8), 10, channels=[4, 8, 16], pool=True, hidden=None)
    # conv 1->4 at 8x8; pool; conv 4->8 at 4x4; pool; conv 8->16 at 2x2; 2x2 average pool; linear 64->10
    assert layer_macs(m, torch.zeros(1, 1, 8, 8)) == [8 * 8 * 4 * 1 * 9, 4 * 4 * 8 * 4 * 9, 2 * 2 * 16 * 8 * 9, 64 * 10]
    # Newton-Schulz on the 16 x 72 kernel matrix of conv 3: 5 x (2 * 16^2 * 72 + 16^3)
    assert newton_schulz_macs(torch.Size([16, 8, 3, 3]), 5) == 5 * (2 * 16 * 16 * 72 + 16 ** 3)
    assert newton_schulz_macs(torch.Size([72, 16]), 5) == newton_schulz_macs(torch.Size([16, 72]), 5)
    fwd, opt = layer_costs(m, torch.zeros(1, 1, 8, 8), Muon(m.parameters()))
    assert fwd == [2 * 2304, 2 * 4608, 2 * 4608, 2 * 640]
    assert opt[2] == 2 * newton_schulz_macs(torch.Size([16, 8, 3, 3]), 5)
    assert layer_costs(m, torch.zeros(1, 1, 8, 8), torch.optim.SGD(m.parameters(), lr=0.1))[1] == [0, 0, 0, 0]
    # start at layer 2 of 3 (0-based s=1), 10 samples: forward of all, weight grads of 2, 3, input grad of 3
    assert step_flops([2, 4, 6], [1, 1, 1], 1, 10) == (10 * (4 + 6 + 6), 10 * 12 + 160 + 2)
    assert step_flops([2, 4, 6], [1, 1, 1], 0, 10) == (10 * (12 + 10), 10 * 12 + 220 + 3)


def _budget_run(make_cfg, sampling: str, *extra):
    state, trainer, _ = build(make_cfg(*TINY, f"trainer.sampling={sampling}", "trainer.batch_size=64", *extra))
    (phase,) = trainer.phases(state)
    base = [g["lr"] for g in state.optimizer.param_groups]
    lrs, spent = [], []
    for _ in range(phase.steps):
        lrs.append([g["lr"] for g in state.optimizer.param_groups])
        spent.append(trainer.train_flops)
        m = trainer.step(state)
        if state.stop:
            break
    return trainer, base, lrs, spent, m


def test_budget_is_the_compute_of_the_full_runs_steps(make_cfg):
    full, _, lrs, _, m = _budget_run(make_cfg, "full")
    assert len(lrs) == 12 and full.train_flops == full.budget and m["budget_used"] == 1.0
    drop, _, lrs_d, _, m = _budget_run(make_cfg, "uniform")
    assert drop.budget == full.budget
    assert len(lrs_d) > 12 and drop.train_flops >= drop.budget  # cheaper steps: more of them
    last = step_flops(drop.fwd, drop.opt, m["start_layer"] - 1, 64)[1]
    assert drop.train_flops - last < drop.budget  # it stopped on the step that exhausted the budget
    assert m["backward_flops"] < full.backward_flops  # the same compute, less of it backward


def test_schedule_runs_over_the_budget_not_the_steps(make_cfg):
    import math

    for sampling in ("full", "uniform"):
        trainer, base, lrs, spent, _ = _budget_run(make_cfg, sampling)
        for lr, used in zip(lrs, spent):
            f = 0.5 * (1 + math.cos(math.pi * used / trainer.budget))
            assert lr == pytest.approx([b * f for b in base], rel=1e-9, abs=1e-12)
    # full sampling with equal batches: the cosine over the budget is the cosine over the steps
    state, _, _ = build(make_cfg(*TINY, "trainer.sampling=full", "trainer.budget=steps", "trainer.batch_size=64"))
    ref = []
    for _ in range(12):
        ref.append(state.optimizer.param_groups[0]["lr"])
        state.optimizer.step(), state.scheduler.step()
    _, _, lrs, _, _ = _budget_run(make_cfg, "full")
    assert [lr[0] for lr in lrs] == pytest.approx(ref, rel=1e-6, abs=1e-12)


def test_bad_budget_is_one_line(make_cfg):
    with pytest.raises(Exception, match="trainer.budget: unknown 'time'"):
        build(make_cfg(*TINY, "trainer.budget=time"))


def test_train_eval_is_dense_early_and_the_same_subset_in_both_arms(make_cfg):
    subsets = []
    for sampling in ("full", "uniform"):
        state, trainer, hooks = build(make_cfg(*TINY, f"trainer.sampling={sampling}"))
        h = next(h for h in hooks if h.name == "train_eval")
        assert [s for s in range(1, 13) if h.due(s)] == [1, 2, 3, 4, 5, 6, 9, 12] and h.due(0, start=True)
        trainer.phases(state)
        trainer.step(state)  # the trainer's draws do not move the hook's stream
        h.setup(state)
        subsets.append(h.x.clone())
        assert len(h.y) == 512 and 0 <= float(h(state)["train_acc"]) <= 100
    assert torch.equal(*subsets)


def test_claims_from_a_tiny_sweep(make_cfg, tmp_path):
    for s, arm in (("full", "muon"), ("uniform", "drop_muon")):
        execute(make_cfg(*TINY, "trainer.steps=40", f"trainer.sampling={s}", "study=digits_cnn", f"arm={arm}"),
                tmp_path / s)
    runs, _ = load_runs(tmp_path)
    df = next(r for r in runs if r.cfg["trainer"]["sampling"] == "uniform").metrics
    assert {"start_layer", "layers_updated", "layer_backward", "train_time_s", "train_flops", "backward_flops",
            dm_claims.TRAIN_ACC, dm_claims.TEST_ACC, "update_norms/update_norm_1"} <= set(df)
    assert dm_claims.norm_cols(df) == [f"update_norms/update_norm_{i}" for i in range(1, 5)]
    assert df.layer_backward.iloc[-1] == df.layers_updated.sum()  # update_norms every step: every row logged
    assert dm_claims.frozen_update_max(df, {}) == 0.0
    ev = df[df[dm_claims.TRAIN_ACC].notna()]
    assert list(ev.step[:7]) == [0, 1, 2, 3, 4, 5, 6]  # dense early
    rows = {r["name"]: r for r in dm_claims.cross_run_claims(runs)}
    assert set(rows) == {"wall-clock speedup to Muon's final training accuracy",
                         "FLOP speedup to Muon's final training accuracy", "cheaper steps in wall-clock",
                         "same compute budget"}
    assert all(r["n"] == 1 for r in rows.values())
    assert {r["kind"] for r in rows.values()} == {"headline", "supporting", "check"}
    assert rows["same compute budget"]["passed"]
    drop = next(r for r in runs if r.arm == "drop_muon")
    assert [c["kind"] for c in drop.summary["claims"]] == ["check", "check"]
    muon = next(r for r in runs if r.cfg["trainer"]["sampling"] == "full").metrics
    assert muon.layer_backward.iloc[-1] == 40 * 4 and muon.step.max() == 40 and df.step.max() > 40
    assert pd.notna(rows["cheaper steps in wall-clock"]["measured"])


def test_interrupted_budget_run_resumes_identically(make_cfg, tmp_path, monkeypatch):
    from runner.trainers.progressive import ProgressiveTrainer

    cfg = make_cfg(*TINY, "trainer.steps=20", "checkpoint.every_steps=10", "flush_every=5")
    execute(cfg, tmp_path / "reference")
    original, calls = ProgressiveTrainer.step, []

    def interrupted(self, state):
        calls.append(1)
        if len(calls) == 17:  # after the checkpoint at step 10
            raise KeyboardInterrupt
        return original(self, state)

    monkeypatch.setattr(ProgressiveTrainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        execute(cfg, tmp_path / "resumed")
    monkeypatch.setattr(ProgressiveTrainer, "step", original)
    execute(cfg, tmp_path / "resumed")
    a, b = (pd.read_csv(tmp_path / r / "metrics.csv").drop(columns=["time_s", "train_time_s"])
            for r in ("reference", "resumed"))
    assert a.step.max() > 20  # Drop-Muon: more (cheaper) steps than the budget's 20 full ones
    pd.testing.assert_frame_equal(a, b)
