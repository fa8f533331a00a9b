"""StableUN: the toy's facts, the answer scores, NPO's loss, one StableUN step against its equations
computed independently (torch.func on a flat dict), the projection, the phases through the engine (same
attack for every method of a seed), the question/answer loader on tiny files with a tiny local model and
tokenizer written here, the paper-scale composition, and a bit-identical resume in mid-unlearning."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from experiments.stableun.facts import QA, answer_scores, encode_qa, read_qa, synthetic_facts
from experiments.stableun.trainer import UnlearnTrainer
from runner import seeding
from runner.dispatch import build, execute
from runner.models.lm import TransformerLM
from runner.trainers.base import TrainState

pytestmark = pytest.mark.usefixtures("one_thread")
EXP = ["experiment=stableun", "device=cpu"]


def test_synthetic_facts_forget_whole_subjects_and_share_relations():
    g = seeding.generator(0, "data", "cpu")
    forget, retain, vocab = synthetic_facts(60, 5, 40, 8, g)
    assert (len(forget), len(retain), vocab) == (40, 260, 105)
    fs, rs = set(forget.tokens[:, 0].tolist()), set(retain.tokens[:, 0].tolist())
    assert len(fs) == 8 and not fs & rs  # whole subjects are forgotten
    assert set(forget.tokens[:, 1].tolist()) == set(retain.tokens[:, 1].tolist()) == set(range(60, 65))
    assert ((forget.tokens[:, 2] >= 65) & (forget.tokens[:, 2] < 105)).all()
    again, _, _ = synthetic_facts(60, 5, 40, 8, seeding.generator(0, "data", "cpu"))
    assert torch.equal(again.tokens, forget.tokens)


def test_answer_scores_by_hand():
    qa = QA(torch.tensor([[0, 1, 2, 3], [0, 1, 3, 3]]), torch.tensor([[False, True, True], [False, True, False]]))
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    logits[0, 1, 2] = logits[0, 2, 3] = 50.0  # example 0: both answer tokens are the argmax
    logits[1, 1, 3] = -50.0  # example 1: its one answer token is not
    summed, ce, hit = answer_scores(logits, qa)
    lp = torch.log_softmax(logits, -1)
    assert torch.allclose(summed, torch.stack([lp[0, 1, 2] + lp[0, 2, 3], lp[1, 1, 3]]))
    assert torch.allclose(ce, torch.stack([-(lp[0, 1, 2] + lp[0, 2, 3]) / 2, -lp[1, 1, 3]]))
    assert hit.tolist() == [True, False]


def _trainer_on_toy(seed=0, **kw) -> tuple[UnlearnTrainer, TrainState]:
    torch.manual_seed(seed)
    lm = TransformerLM((2,), 105, dim=16, layers=1, heads=2)
    opt = torch.optim.SGD(lm.parameters(), lr=0.1)
    state = TrainState(device="cpu", seed=seed, generators={s: seeding.generator(seed, s) for s in seeding.STREAMS},
                       modules={"lm": lm}, optimizers={"lm": opt})
    t = UnlearnTrainer(learn_steps=5, unlearn_steps=5, attack_steps=3, lr_learn=0.1, lr_unlearn=0.1, **kw)
    phases = t.phases(state)
    return t, state, phases


def test_npo_loss_is_minus_two_over_beta_log_sigmoid():
    t, state, phases = _trainer_on_toy(forget_loss="npo", npo_beta=0.5)
    t.begin_phase(state, phases[1])
    p = t.params()
    with torch.no_grad():
        p2 = {k: v + 0.01 * torch.randn_like(v) for k, v in p.items()}
        logp = t.scores(p2, t.forget)[0]
        want = (-2 / 0.5 * F.logsigmoid(-0.5 * (logp - t.ref_logp))).mean()
        assert torch.allclose(t.unlearn_loss(p2, t.forget, t.ref_logp), want, atol=1e-5)
        assert abs(float(t.unlearn_loss(p, t.forget, t.ref_logp)) - 2 / 0.5 * float(torch.log(torch.tensor(2.0)))) < 1e-5


@pytest.mark.parametrize("perturbation", ["sap", "gpn"])
def test_one_stableun_step_is_the_equations(perturbation):
    """theta_tau, delta, g_f, g_r, the projection and theta - lr (g_f + lambda g_r), recomputed with
    torch.func.grad on the parameter dict (SGD, lr 0.1)."""
    from torch.func import functional_call, grad

    t, state, phases = _trainer_on_toy(forget_loss="ga", feedback=True, perturbation=perturbation, alpha=0.3,
                                       rho=0.2, retain_weight=0.7)
    t.begin_phase(state, phases[1])
    lm = state.modules["lm"]
    theta = {k: v.detach().clone() for k, v in lm.named_parameters()}

    def ce(p, qa):
        logits = functional_call(lm, p, (qa.tokens[:, :-1],))
        return answer_scores(logits, qa)[1].mean()

    Lf = lambda p: -ce(p, t.forget)  # noqa: E731
    Lr = lambda p: ce(p, t.retain)  # noqa: E731

    def nrm(d):
        return torch.sqrt(sum((v ** 2).sum() for v in d.values()))

    noise = torch.Generator().set_state(t.noise_stream.get_state())
    g0 = grad(Lf)(theta)
    tau = {k: theta[k] - 0.3 * g0[k] / nrm(g0) for k in theta}
    d = grad(Lf)(tau) if perturbation == "sap" else {k: torch.randn(v.shape, generator=noise) for k, v in theta.items()}
    delta = {k: 0.2 * d[k] / nrm(d) for k in theta}
    gf = grad(Lf)({k: tau[k] + delta[k] for k in theta})
    gr = grad(Lr)(tau)
    dfr = sum((gf[k] * gr[k]).sum() for k in theta)
    if dfr < 0:
        c = dfr / sum((gr[k] ** 2).sum() for k in theta)
        gf = {k: gf[k] - c * gr[k] for k in theta}
    want = {k: theta[k] - 0.1 * (gf[k] + 0.7 * gr[k]) for k in theta}
    state.step = t.learn_steps
    out = t.step(state)
    for k, v in lm.named_parameters():
        assert torch.allclose(v.detach(), want[k], atol=1e-5), k
    assert out["projected"] == float(dfr < 0) and abs(out["delta_norm"] - 0.2) < 1e-5
    assert t.grad_calls == (4 if perturbation == "sap" else 3)


def test_projection_removes_the_conflicting_component():
    """After projection g_f . g_r = 0 when they conflicted (what the update then adds is lambda g_r)."""
    gf, gr = [torch.tensor([1.0, -2.0])], [torch.tensor([0.0, 1.0])]
    from experiments.stableun.trainer import dot
    c = dot(gf, gr) / dot(gr, gr)
    proj = [a - c * b for a, b in zip(gf, gr)]
    assert float(dot(proj, gr)) == 0.0 and torch.equal(proj[0], torch.tensor([1.0, 0.0]))


def _run(make_cfg, tmp_path, name, *extra):
    small = ["trainer.learn_steps=80", "trainer.unlearn_steps=60", "trainer.attack_steps=5", "log_every=1"]
    return execute(make_cfg(*EXP, *small, *extra), tmp_path / name)


def test_phases_through_the_engine_and_the_same_attack_for_every_method(make_cfg, tmp_path):
    import pandas as pd

    a = _run(make_cfg, tmp_path, "ga", "trainer.forget_loss=ga")
    b = _run(make_cfg, tmp_path, "su", "trainer.feedback=true")
    assert a["status"] == b["status"] == "completed"
    for name in ("ga", "su"):
        m = pd.read_csv(tmp_path / name / "metrics.csv")
        assert list(m.task.unique()) == [1, 2, 3] and len(m) == 80 + 60 + 5
        assert m.dropna(subset=["learned_acc"]).learned_acc.iloc[0] == 100.0  # 80 steps learn the toy
        att = m[m.task == 3]
        assert att.relearn_acc.between(0, 100).all() and att.sharpness.nunique() == 1 and att.sharpness.iloc[0] >= 0
        unl = m[m.task == 2]
        if unl.unlearned.iloc[-1] == 1:  # no update after the target: the forget accuracy stays put
            k = int(unl.unlearn_steps_used.iloc[-1])
            assert unl.forget_acc.iloc[k - 1] <= 5 and unl.forget_acc.iloc[k:].nunique() <= 1
    # the attack subset depends on the seed only
    state_a, ta, _ = build(make_cfg(*EXP, "trainer.forget_loss=ga"))
    state_b, tb, _ = build(make_cfg(*EXP, "trainer.feedback=true"))
    pa, pb = ta.phases(state_a), tb.phases(state_b)
    ta.begin_phase(state_a, pa[1]), tb.begin_phase(state_b, pb[1])
    ta.begin_phase(state_a, pa[2]), tb.begin_phase(state_b, pb[2])
    assert torch.equal(ta.attack_idx, tb.attack_idx) and len(ta.held_idx) == 30


def _tiny_local_model(path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    from runner.models.hf import tiny_config

    words = "[PAD] [UNK] who wrote what is the capital of france paris book alice bob red colour".split()
    transformers.AutoModelForCausalLM.from_config(tiny_config(len(words))).save_pretrained(path)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(path)


def _write_qa(path, rows):
    path.write_text("\n".join(json.dumps({"question": q, "answer": a}) for q, a in rows) + "\n")


def test_question_answer_files_load_and_a_local_model_unlearns(make_cfg, tmp_path):
    from runner.models.hf import load_tokenizer

    model_dir, data_dir = tmp_path / "model", tmp_path / "data"
    model_dir.mkdir(), data_dir.mkdir()
    _tiny_local_model(model_dir)
    forget = [("who wrote the book", "alice"), ("what is the capital of france", "paris")] * 7
    _write_qa(data_dir / "forget.jsonl", forget)
    _write_qa(data_dir / "retain.jsonl", [("what is the colour", "red"), ("who wrote what", "bob book")] * 5)
    assert read_qa(data_dir / "forget.jsonl")[1] == ("what is the capital of france", "paris")
    tok = load_tokenizer(str(model_dir))
    qa = encode_qa(read_qa(data_dir / "retain.jsonl"), tok)
    assert qa.tokens.shape == (10, 5) and qa.answer_mask[1].tolist() == [False, False, True, True]
    qa = encode_qa(read_qa(data_dir / "forget.jsonl"), tok)  # 4 + 1 and 6 + 1 tokens: the first is padded
    assert qa.tokens.shape == (14, 7) and qa.answer_mask[0].tolist() == [False, False, False, True, False, False]
    assert qa.tokens[0, 5:].tolist() == [0, 0] and qa.answer_mask[1].tolist() == [False] * 5 + [True]
    cfg = make_cfg(*EXP, "scale=paper", "trainer.learn_steps=2", "trainer.unlearn_steps=2", "trainer.attack_steps=2",
                   f"trainer.data_dir={data_dir}", f"trainer.tokenizer_path={model_dir}",
                   f"components.lm.module.path={model_dir}", "trainer.feedback=true", "trainer.batch_size=4")
    summary = execute(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    assert 0 <= summary["metrics"]["relearn_acc"] <= 100


def test_paper_scale_composes_the_protocol(make_cfg):
    from runner import experiments

    runs = {(s, a): o for s, a, o in experiments.arm_runs("stableun", "paper")}
    assert set(runs) == {("relearn", a) for a in ("ga", "npo", "stableun", "stableun_gpn")}
    cfg = make_cfg(*EXP, "scale=paper", *[o for o in runs[("relearn", "stableun")] if not o.startswith("seed")])
    t = cfg.trainer
    assert (t.data, t.feedback, t.perturbation, t.attack_facts, t.attack_steps) == ("files", True, "sap", 10, 20)
    assert cfg.components.lm.module._target_ == "runner.models.hf.LocalCausalLM"


def _drive(t, state, phases, start=(0, 0), stop=None) -> list[dict]:
    """The engine's order: begin_phase, then (on a resume) the restore, then the steps."""
    out = []
    for pi, ph in enumerate(phases):
        if pi < start[0]:
            continue
        t.begin_phase(state, ph)
        if pi == start[0] and start[2:]:
            start[2]()
        for i in range(start[1] if pi == start[0] else 0, ph.steps):
            if stop == (pi, i):
                return out
            out.append(t.step(state))
            state.step += 1
    return out


def test_resume_mid_unlearning_is_bit_identical():
    import copy

    kw = dict(forget_loss="npo", feedback=True, perturbation="gpn", rho=0.3)
    t, state, phases = _trainer_on_toy(**kw)
    straight = _drive(t, state, phases)
    t, state, phases = _trainer_on_toy(**kw)
    _drive(t, state, phases, stop=(1, 3))
    ck = copy.deepcopy((state.modules["lm"].state_dict(), state.optimizers["lm"].state_dict(),
                        {k: g.get_state() for k, g in state.generators.items()}, t.state_dict(), state.step))
    t2, state2, phases2 = _trainer_on_toy(**kw)

    def restore():
        state2.modules["lm"].load_state_dict(ck[0])
        state2.optimizers["lm"].load_state_dict(ck[1])
        for k, g in state2.generators.items():
            if k in ck[2]:
                g.set_state(ck[2][k])
        t2.load_state_dict(ck[3])
        state2.step = ck[4]

    resumed = _drive(t2, state2, phases2, start=(1, 3, restore))
    assert [r["relearn_acc"] for r in resumed[-3:]] == [r["relearn_acc"] for r in straight[-3:]]
    assert float(resumed[-1]["loss"]) == float(straight[-1]["loss"]) and resumed[-1]["sharpness"] == straight[-1]["sharpness"]
