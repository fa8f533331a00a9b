"""Continual-evaluation metrics on hand-made accuracy curves with known answers."""
import math

import pytest

from runner.metrics.continual import ContinualMetrics, from_history


def test_two_task_curve_min_wc_acc_forgetting():
    # task 1 learned to 90 (2 evals), then task 2 starts: task-1 accuracy dips to 30 and recovers to 80
    accs = [[50.0], [90.0], [30.0, 10.0], [60.0, 70.0], [80.0, 95.0]]
    current = [1, 1, 2, 2, 2]
    ends = [False, True, False, False, True]
    out = from_history(accs, current, ends, windows=(2, 10))
    assert math.isnan(out[1]["min_acc"]) and out[1]["wc_acc"] == 90.0 and out[1]["acc"] == 90.0
    assert math.isnan(out[1]["forg"])
    assert out[2]["min_acc"] == 30.0  # min of task 1 after its end
    assert out[2]["wc_acc"] == pytest.approx(0.5 * 10.0 + 0.5 * 30.0)
    last = out[-1]
    assert last["min_acc"] == 30.0
    assert last["wc_acc"] == pytest.approx(0.5 * 95 + 0.5 * 30)
    assert last["acc"] == pytest.approx((80 + 95) / 2)
    assert last["forg"] == pytest.approx(90 - 80)
    # WF^w: largest drop between two of the last w evaluations, max over the run, mean over seen tasks
    # task 1 series 50, 90, 30, 60, 80: w=2 (consecutive) largest drop 60; task 2 series 10, 70, 95: 0
    assert last["wf2"] == pytest.approx((60 + 0) / 2)
    # w=2 largest consecutive rise: task 1 -> 40 (50->90), task 2 -> 60 (10->70)
    assert last["wp2"] == pytest.approx((40 + 60) / 2)
    # w=10 covers everything: task 1 drop 90->30 = 60, rise 30->80 = 50; task 2 rise 10->95 = 85
    assert last["wf10"] == pytest.approx(30.0)
    assert last["wp10"] == pytest.approx((50 + 85) / 2)


def test_window_limits_pairs_to_last_w_evaluations():
    # a slow decline 100, 90, ..., 0 over 11 evals: drop within any 3 evals is 20, over all is 100
    series = [[100.0 - 10 * i] for i in range(11)]
    out = from_history(series, [1] * 11, [False] * 11, windows=(3, 100))
    assert out[-1]["wf3"] == pytest.approx(20.0)
    assert out[-1]["wf100"] == pytest.approx(100.0)
    assert out[-1]["wp3"] == 0.0


def test_wp_counts_rises_from_any_earlier_point():
    # the official code only starts rises from running maxima (it would give 4 here); the paper's
    # definition -- the largest rise inside the window -- is 8 (1 -> 9)
    out = from_history([[5.0], [1.0], [9.0]], [1, 1, 1], [False] * 3, windows=(10,))
    assert out[-1]["wp10"] == pytest.approx(8.0)


def test_three_tasks_min_acc_averages_old_tasks():
    t = ContinualMetrics(3, windows=(10,))
    t.update([80.0], 1, task_end=True)
    t.update([40.0, 20.0], 2)
    t.update([70.0, 90.0], 2, task_end=True)
    r = t.update([60.0, 50.0, 5.0], 3)
    # task 1 min after its end: 40; task 2 min after its end: 50 -> mean 45
    assert r["min_acc"] == pytest.approx(45.0)
    assert r["wc_acc"] == pytest.approx(5.0 / 3 + (2 / 3) * 45.0)
    r = t.update([75.0, 85.0, 90.0], 3, task_end=True)
    assert r["acc"] == pytest.approx((75 + 85 + 90) / 3)
    assert r["forg"] == pytest.approx(((80 - 75) + (90 - 85)) / 2)


def test_state_dict_round_trip():
    a = ContinualMetrics(2, windows=(3,))
    a.update([50.0], 1, task_end=True)
    a.update([20.0, 30.0], 2)
    b = ContinualMetrics(2, windows=(3,))
    b.load_state_dict(a.state_dict())
    assert a.update([40.0, 60.0], 2) == b.update([40.0, 60.0], 2)


def test_the_hook_defers_every_value_and_resolves_them_as_an_eager_tracker_would(make_cfg):
    """continual_eval returns Deferred values only (no host transfer per evaluation); resolving at a
    flush gives exactly what the tracker gives when fed each evaluation's accuracies at once, in order,
    and state_dict resolves first."""
    import torch

    from runner.dispatch import build
    from runner.results import Deferred

    cfg = make_cfg("trainer=continual", "dataset=split_digits", "trainer.iters_per_task=3", "model.hidden=[16]",
                   "hooks=[continual_eval]", "hooks.continual_eval.max_samples=40", "hooks.continual_eval.windows=[2,5]")
    state, trainer, hooks = build(cfg)
    hook = hooks[0]
    hook.setup(state)
    eager = ContinualMetrics(state.data.n_tasks, (2, 5))
    outs, expected = [], []
    g = torch.Generator().manual_seed(0)
    for step, (task, end) in enumerate([(1, False), (1, True), (2, False), (2, False), (2, True), (3, False)], start=1):
        with torch.no_grad():  # move the model between evaluations so accuracies change
            for p in state.model.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        state.task, state.phase_end, state.step = task, end, step
        accs = hook.accuracies(state.model, task)
        out = hook(state)
        assert out and all(isinstance(v, Deferred) for v in out.values())
        outs.append(out)
        expected.append({**{f"acc_task{k}": a for k, a in enumerate(accs, start=1)}, **eager.update(accs, task, end)})
    assert len(hook.pending) == 6
    sd = hook.state_dict()  # resolves
    assert not hook.pending and sd["tracker"] == eager.state_dict()
    for out, want in zip(outs, expected):
        assert set(out) == set(want)
        got = type(next(iter(out.values()))).resolve_all(list(out.values()))
        for (k, w), v in zip(want.items(), got):
            assert (math.isnan(w) and math.isnan(v)) or v == pytest.approx(w, abs=1e-12), k
