"""Multi-budget LR plans, the branching trainer, the bigram toy and the wsd claims."""
import math

import pandas as pd
import pytest
import torch

from experiments.wsd import claims as wsd_claims
from runner.data.bigram import zipf_bigram
from runner.dispatch import build, execute
from runner.engine import Engine
from runner.errors import OptrunError
from runner.models.lm import SoftmaxRegressionLM, TransformerLM
from runner.optim import schedules as S
from runner.report.runs import load_runs
from runner.results import MetricsWriter


@pytest.fixture(autouse=True)
def _keep_threads():
    """experiment=wsd sets threads=1, which build() applies process-wide; restore it for other tests."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


TINY = ["experiment=wsd", "device=cpu", "dataset.n_train=5000", "dataset.n_test=200", "hooks.population.every=20"]


def _lrs(sched_factory, steps, **kw):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    sched = sched_factory(opt, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, sched


def test_wsd_plan_forks_a_branch_at_every_budget():
    segs = S.wsd_segments([100, 200, 400], warmup=10, decay_fraction=0.1)
    assert [(s.start, s.steps, s.kind, s.budget, s.fork) for s in segs] == [
        (0, 90, "stable", None, 100), (90, 10, "branch", 100, None), (90, 90, "stable", None, 200),
        (180, 20, "branch", 200, None), (180, 180, "stable", None, 400), (360, 40, "decay", 400, None)]
    assert sum(s.steps for s in segs) == 400 + 10 + 20
    # with a plain trainer the schedule follows the path: warmup, constant, one decay at the end
    lrs, _ = _lrs(S.wsd, 400, budgets=[100, 200, 400], warmup=10, final_lr_ratio=0.01)
    assert lrs[0] == pytest.approx(0.2) and lrs[9] == lrs[359] == 2.0
    assert lrs[-1] == pytest.approx(0.02) and all(a >= b for a, b in zip(lrs[360:], lrs[361:]))


def test_wsd_s_and_cyclic_cosine_stay_on_one_path():
    lrs, sched = _lrs(S.wsd_s, 400, budgets=[100, 200, 400], final_lr_ratio=0.01)
    assert lrs[99] == lrs[199] == lrs[399] == pytest.approx(0.02) and lrs[100] == lrs[200] == 2.0
    assert sched.budgets == [100, 200, 400] and sched.total_steps == 400
    lrs, _ = _lrs(S.cyclic_cosine, 300, budgets=[100, 300], final_lr_ratio=0.0)
    assert lrs[0] == pytest.approx(2.0, rel=1e-3) and lrs[100] == pytest.approx(2.0, rel=1e-3)
    assert lrs[99] == pytest.approx(0.0, abs=1e-9) and lrs[199] == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("shape", S.SHAPES)
def test_decay_shapes_run_from_peak_to_the_final_ratio(shape):
    vals = [S.decay_multiplier(shape, t / 50, 0.05) for t in range(1, 51)]
    assert vals[-1] == pytest.approx(0.05) and vals[0] > 0.7 and all(a >= b for a, b in zip(vals, vals[1:]))


@pytest.mark.parametrize("kw, match", [
    (dict(budgets=[100, 50]), "strictly increasing"), (dict(budgets=[None]), "list of step counts"),
    (dict(budgets=[100], warmup=100), "warmup"), (dict(budgets=[100], shape="zigzag"), "shape"),
    (dict(budgets=[100], decay_fraction=0.0), "decay_fraction")])
def test_bad_plans_give_one_line(kw, match):
    with pytest.raises(OptrunError, match=match):
        S.wsd_segments(**kw)


def test_bigram_population_loss_is_exact():
    d = zipf_bigram(seed=3, vocab=32, n_train=100, n_test=10)
    assert d.x_train.shape == (100,) and d.entropy_floor > 0
    bayes = SoftmaxRegressionLM((), 32)
    bayes.logits.weight.data = d.transition.log().float()
    m = d.population_metrics(bayes)
    assert abs(m["excess_loss"]) < 1e-5 and m["pop_loss"] == pytest.approx(d.entropy_floor, abs=1e-5)
    m = d.population_metrics(SoftmaxRegressionLM((), 32))  # uniform predictor
    assert m["pop_loss"] == pytest.approx(math.log(32)) and m["excess_det"] > m["excess_hi"] > 0


def test_branches_are_discarded_exactly(make_cfg, tmp_path):
    """The main path of a multi-budget WSD run ends where a single-budget WSD run ends, bit for bit."""
    finals = {}
    for name, budgets in (("multi", "[40,80,160]"), ("single", "[160]")):
        state, trainer, hooks = build(make_cfg(*TINY, f"schedule.budgets={budgets}"))
        out = Engine(trainer, hooks, MetricsWriter(tmp_path / f"{name}.csv"), progress=False).run(state)
        finals[name] = (state.model.logits.weight.detach().clone(), out.step)
    assert torch.equal(finals["multi"][0], finals["single"][0])
    assert finals["multi"][1] == 160 + 4 + 8 and finals["single"][1] == 160
    df = pd.read_csv(tmp_path / "multi.csv")
    assert df[df.phase == "branch"].lr.min() == pytest.approx(0.08)
    assert df.dropna(subset=["budget"]).budget.tolist() == [40, 80, 160]
    assert df.dropna(subset=["fork"]).path_step.tolist() == [36, 72, 144]


def test_transformer_lm_on_markov_sequences(make_cfg, tmp_path):
    cfg = make_cfg(*TINY, "model=transformer_lm", "model.dim=16", "model.layers=1", "model.heads=2",
                   "optimizer=adamw", "~optimizer.momentum", "optimizer.lr=0.01", "dataset.seq_len=8",
                   "dataset.vocab=16",
                   "dataset.n_test=16", "schedule=wsd_s", "schedule.budgets=[10,20]")
    state, trainer, hooks = build(cfg)
    assert isinstance(state.model, TransformerLM) and state.data.x_train.shape[1:] == (8,)
    Engine(trainer, hooks, MetricsWriter(tmp_path / "m.csv"), progress=False).run(state)
    df = pd.read_csv(tmp_path / "m.csv")
    assert df["population/excess_loss"].notna().sum() >= 3 and df.loss.notna().all() is not None and math.isfinite(df.loss.iloc[-1])


def test_budget_trainer_needs_a_budget_schedule(make_cfg):
    state, trainer, hooks = build(make_cfg(*TINY))
    state.scheduler = torch.optim.lr_scheduler.ConstantLR(state.optimizer)
    with pytest.raises(OptrunError, match="multi-budget schedule"):
        trainer.phases(state)


def test_scales_compose_the_whole_setup(make_cfg):
    """smoke: softmax regression + SGD (no momentum); paper: the transformer stand-in + AdamW, no stray key."""
    smoke = make_cfg("experiment=wsd")
    assert smoke.model._target_.endswith("SoftmaxRegressionLM") and smoke.optimizer._target_ == "torch.optim.SGD"
    assert smoke.optimizer.lr == 8.0 and smoke.optimizer.momentum == 0.0 and smoke.threads == 1
    assert list(smoke.schedule.budgets) == [2000, 4000, 8000] and smoke.scale == "smoke"
    paper = make_cfg("experiment=wsd", "scale=paper")
    assert paper.model._target_.endswith("TransformerLM") and paper.optimizer._target_ == "torch.optim.AdamW"
    assert "momentum" not in paper.optimizer and paper.optimizer.lr == 0.003 and paper.optimizer.weight_decay == 0.1
    assert list(paper.schedule.budgets) == [5000, 10000, 20000] and paper.schedule.warmup == 500
    assert paper.dataset.vocab == 1024 and paper.dataset.seq_len == 128 and paper.scale == "paper"
    assert paper.schedule.final_lr_ratio == smoke.schedule.final_lr_ratio == 0.01


def test_claims_from_a_tiny_sweep(make_cfg, tmp_path):
    # population every 10 updates: the stable path steps D after each fork are then logged (branches shift the count)
    base = [*TINY, "hooks.population.every=10", "optimizer.lr=4", f"results_dir={tmp_path}"]
    for extra in (["study=schedules", "arm=wsd", "schedule=wsd"], ["study=schedules", "arm=wsd_s", "schedule=wsd_s"],
                  ["study=schedules", "arm=cyclic_cosine", "schedule=cyclic_cosine"],
                  ["study=tuned_cosine", "arm=cosine", "schedule=cyclic_cosine", "schedule.budgets=[400]"]):
        execute(make_cfg(*base, "schedule.budgets=[100,200,400]", *extra), tmp_path / "_".join(extra))
    runs, skipped = load_runs(tmp_path)
    assert len(runs) == 4 and not skipped
    schedules = sorted(wsd_claims.schedule_of(r.cfg) for r in runs)
    assert schedules == ["cosine", "cyclic_cosine", "wsd", "wsd_s"]
    rows = wsd_claims.cross_run_claims(runs)
    assert [r["n"] for r in rows] == [1, 1, 1, 1]
    steps = next(r for r in rows if r["name"] == "WSD-S uses fewer steps")
    assert steps["measured"] == pytest.approx(400 / 430) and steps["passed"]
    assert [r["kind"] for r in rows] == ["headline", "headline", "check", "supporting"]
    wsd = next(r for r in runs if r.is_in("schedules", "wsd"))
    assert {c["name"] for c in wsd.summary["claims"]} == {"decay vs stable drop, budget 1",
                                                          "decay vs stable drop, budget 2",
                                                          "decay vs stable drop, budget 3"}
    assert {c["kind"] for c in wsd.summary["claims"]} == {"headline"}
    assert not any(r.summary.get("claims") for r in runs if not r.is_in("schedules", "wsd"))
    assert all(math.isfinite(c["measured"]) for c in wsd.summary["claims"])


def test_decay_and_stable_drops_over_the_same_steps():
    """Budget k < last: stable drop from the fork to D steps later on the main branch (not the discarded
    branch, which passes the same path steps); last budget: the D stable steps before the fork."""
    E = wsd_claims.EXCESS
    rows = [  # (phase, path_step, fork, budget, excess)
        ("stable", 80, None, None, 0.60), ("stable", 90, 100, None, 0.50), ("branch", 100, None, 100, 0.30),
        ("stable", 100, None, None, 0.45), ("stable", 160, None, None, 0.42), ("stable", 180, 200, None, 0.40),
        ("decay", 200, None, 200, 0.20)]
    df = pd.DataFrame(rows, columns=["phase", "path_step", "fork", "budget", E])
    cfg = {"schedule": {"budgets": [100, 200]}}
    assert wsd_claims.drops(df, cfg, 0) == pytest.approx((0.20, 0.05))
    assert wsd_claims.drops(df, cfg, 1) == pytest.approx((0.20, 0.02))
    assert wsd_claims.stable_share(df, cfg, 0) == pytest.approx(0.25)
    bad = df.assign(**{E: df[E].where(df.phase != "decay", 0.5)})
    with pytest.raises(ValueError, match="did not lower"):
        wsd_claims.stable_share(bad, cfg, 1)
    with pytest.raises(ValueError, match="not logged on the stable branch"):
        wsd_claims.drops(df.drop(index=3), cfg, 0)
