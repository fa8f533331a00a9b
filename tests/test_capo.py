"""CAPO and GRPO (experiments/capo): the group advantages and the clipped loss against a direct
computation, the repeat-free no-grad forward against the whole batch, the curvature model's
predicted KL against the exact KL of a softmax head, the trial step against the optimizer's own step, the
trainer through the engine (the mask off in GRPO, everything masked at a tiny trust region), the
MATH-style loader on tiny files, and the claims' collapse test."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from experiments.capo.capo import predicted_kl, trial_update
from experiments.capo.claims import collapsed, kept_of_peak, samples_to
from experiments.capo.math_data import MathTask, extract_answer
from experiments.capo.trainer import GRPOCAPO, distinct_forward, group_advantages, grpo_loss, grpo_terms
from runner.dispatch import execute
from runner.models.lm import TransformerLM

TINY = ["experiment=capo", "device=cpu", "threads=1", "trainer.steps=3", "trainer.sft_steps=2", "trainer.prompts=4",
        "trainer.group=4", "trainer.eval_prompts=16", "trainer.eval_every=2", "components.policy.module.dim=16",
        "components.policy.module.heads=2"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_group_advantages_and_clipped_loss_match_the_definition():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    adv = group_advantages(r, 4, eps=1e-4)
    for g in range(3):
        grp = r[4 * g: 4 * g + 4]
        want = (grp - grp.mean()) / (grp.std() + 1e-4)
        assert torch.allclose(adv[4 * g: 4 * g + 4], want)
    assert (adv[4:8] == 0).all()  # a group of equal rewards teaches nothing
    B, N, eps = 12, 3, 0.2
    logp, old = -torch.rand(B, N, generator=gen(1)), -torch.rand(B, N, generator=gen(2))
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[0, 2] = False
    terms, clipped = grpo_terms(logp, old, adv, eps)
    loss, want = grpo_loss(terms, valid), 0.0
    for i in range(B):
        total = 0.0
        for t in range(int(valid[i].sum())):
            rho = math_exp(logp[i, t] - old[i, t])
            total += min(rho * adv[i], min(max(rho, 1 - eps), 1 + eps) * adv[i])
        want += total / int(valid[i].sum())
    assert abs(float(loss) + float(want) / B) < 1e-6
    rho = torch.exp(logp - old)
    assert torch.equal(clipped, ((rho > 1 + eps) & (adv[:, None] > 0)) | ((rho < 1 - eps) & (adv[:, None] < 0)))
    keep = torch.ones_like(valid)
    keep[1] = False  # a masked completion leaves the loss; the others keep their weights
    assert torch.isclose(grpo_loss(terms, valid, keep), loss + terms[1].mean() / B, atol=1e-6)


def math_exp(x):
    return float(torch.exp(x))


def test_distinct_forward_gives_the_whole_batchs_logits_bit_for_bit():
    """Decoding and the no-grad passes run each distinct sequence once: the logits must be the whole batch's,
    whatever the share of repeats (bit for bit on the machine the smoke numbers come from; the test allows
    float rounding, which another BLAS may add)."""
    torch.manual_seed(0)
    model = TransformerLM(None, n_classes=12, dim=64, layers=2, heads=4)
    prompts = torch.randint(0, 12, (16, 6), generator=gen(3))
    for L, spread in ((6, 0), (7, 2), (8, 12)):  # a group of 8 per prompt, `spread` kinds of completion
        tail = torch.randint(0, spread or 1, (128, L - 6), generator=gen(L))
        tokens = torch.cat([prompts.repeat_interleave(8, 0), tail], dim=1)
        with torch.no_grad():
            torch.testing.assert_close(distinct_forward(model, tokens), model(tokens), rtol=1e-6, atol=1e-6)
    with torch.enable_grad():  # with a graph the batch runs whole
        assert distinct_forward(model, tokens).requires_grad


def test_predicted_kl_is_the_softmax_fisher_and_matches_the_exact_kl_of_a_head_step():
    z, dz = torch.randn(5, 7, generator=gen(3)), torch.randn(5, 7, generator=gen(4))
    pi = torch.softmax(z, -1)
    fisher = torch.diag_embed(pi) - pi[:, :, None] * pi[:, None, :]
    assert torch.allclose(predicted_kl(dz, pi), 0.5 * torch.einsum("bi,bij,bj->b", dz, fisher, dz), atol=1e-6)
    # the last-layer model on a tiny LM: a small change of the head, features fixed, is predicted to second order
    model = TransformerLM(None, 12, dim=16, layers=1, heads=2)
    x = torch.randint(12, (4, 6), generator=gen(5))
    with torch.no_grad():
        h = model.features(x)
        logp = torch.log_softmax(model.head(h), -1)
        for scale in (1e-1, 1e-2):
            dW = scale * torch.randn_like(model.head.weight)
            new = torch.log_softmax(model.head(h) + h @ dW.T, -1)
            exact = (new.exp() * (new - logp)).sum(-1)
            pred = predicted_kl(h @ dW.T, logp.exp())
            assert torch.allclose(pred, exact, rtol=5 * scale, atol=1e-9)


@pytest.mark.parametrize("opt_cls", [torch.optim.Adam, torch.optim.SGD])
def test_the_trial_step_is_the_optimizers_step_and_touches_nothing(opt_cls):
    model = TransformerLM(None, 12, dim=16, layers=1, heads=2)
    opt = opt_cls(model.parameters(), lr=1e-2, **({"momentum": 0.9} if opt_cls is torch.optim.SGD else {}))
    x = torch.randint(12, (4, 6), generator=gen(6))
    for _ in range(2):  # some optimizer state first
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    params = list(model.parameters())
    grads = torch.autograd.grad(model(x).pow(3).mean(), params)
    before = [p.detach().clone() for p in params]
    state = {k: v.clone() for k, v in opt.state[params[0]].items() if torch.is_tensor(v)}
    delta = trial_update(opt, params, grads)
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert all(torch.equal(opt.state[params[0]][k], v) for k, v in state.items())
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()
    assert all(torch.allclose(p - b, d, atol=1e-7) for p, b, d in zip(params, before, delta))


def metrics(path) -> pd.DataFrame:
    return pd.read_csv(next(path.rglob("metrics.csv")))


def test_grpo_and_capo_run_through_the_engine(make_cfg, tmp_path):
    execute(make_cfg(*TINY, "trainer.capo=false"), tmp_path / "grpo")
    df = metrics(tmp_path / "grpo")
    r = df.dropna(subset=["rl_step"])
    assert len(df) == 5 and r.rl_step.tolist() == [1, 2, 3] and (r.masked_fraction == 0).all()
    assert r.samples.tolist() == [16, 32, 48] and r.accuracy.notna().sum() == 2 and df.sft_accuracy.notna().any()
    assert np.isfinite(r[["kl_predicted", "kl_realised", "entropy", "grad_norm"]].to_numpy()).all()
    execute(make_cfg(*TINY, "trainer.capo=true", "trainer.delta=1e30"), tmp_path / "none")
    r = metrics(tmp_path / "none").dropna(subset=["rl_step"])
    assert (r.masked_fraction == 0).all()


@pytest.mark.parametrize("capo", [True, False])
def test_one_update_masks_what_moves_beyond_the_trust_region(capo):
    """A zero-width trust region flags every token; CAPO masks them all and a fresh Adam does not move,
    GRPO only reports them. The prediction of an applied step is its exact KL to second order."""
    torch.manual_seed(0)
    model = TransformerLM(None, 12, dim=16, layers=1, heads=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trainer = GRPOCAPO(capo=capo, delta=1e-30)
    tokens = torch.randint(12, (8, 9), generator=gen(8))
    with torch.no_grad():
        old = torch.log_softmax(model(tokens[:, :-1])[:, 5:], -1).gather(-1, tokens[:, 6:, None]).squeeze(-1)
    adv = torch.randn(8, generator=gen(9))
    out = trainer.update(model, opt, tokens, 6, old, adv, torch.ones(8, 3, dtype=torch.bool))
    assert out["flagged_fraction"] == 1.0 and out["masked_fraction"] == (1.0 if capo else 0.0)
    if capo:
        assert float(out["kl_realised"]) == 0.0
    else:
        assert 0 < float(out["kl_realised"]) and abs(float(out["kl_predicted"]) / float(out["kl_realised"]) - 1) < 0.1


def test_capo_run_is_reproducible_by_seed(make_cfg, tmp_path):
    execute(make_cfg(*TINY, "trainer.capo=true"), tmp_path / "a")
    execute(make_cfg(*TINY, "trainer.capo=true"), tmp_path / "b")
    a, b = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    cols = ["loss", "reward", "kl_realised", "samples"]
    assert np.allclose(a[cols].fillna(-1).to_numpy(), b[cols].fillna(-1).to_numpy())


def char_tokenizer(path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    chars = list("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+=-*/^(){}[]\\$.,:;!? \n")
    vocab = {c: i for i, c in enumerate(chars)} | {"[UNK]": len(chars), "[EOS]": len(chars) + 1, "[PAD]": len(chars) + 2}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]",
                                                pad_token="[PAD]")
    fast.save_pretrained(path)
    return fast


def test_math_jsonl_loads_pads_and_rewards_exact_answers(tmp_path):
    from runner.errors import OptrunError

    tok = char_tokenizer(tmp_path / "model")
    (tmp_path / "math").mkdir()
    rows = [{"problem": "What is 2+2?", "answer": "4"}, {"problem": "Simplify 6/8.", "answer": "$\\frac{3}{4}$"}]
    (tmp_path / "math" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = MathTask(str(tmp_path / "math"), model_path=str(tmp_path / "model"), max_new_tokens=32)
    assert task.prompts.shape[0] == 2 and task.prompts.shape[1] == task.prompt_len
    short = tok("What is 2+2?\nPlease")["input_ids"]
    assert (task.prompts[0, 0] == tok.pad_token_id) and tok.decode(task.prompts[0][task.prompts[0] != tok.pad_token_id]
                                                                     .tolist()).startswith("What is 2+2?") and short
    prompts, idx = task.sample(6, gen(7))
    assert prompts.shape == (6, task.prompt_len) and idx.shape == (6, 1)

    def enc(text, n=24):
        ids = tok(text)["input_ids"] + [tok.eos_token_id]
        return ids + [tok.pad_token_id] * (n - len(ids))

    comps = torch.tensor([enc("so \\boxed{4}."), enc("\\boxed{\\frac{3}{4}}"), enc("\\boxed{5}"), enc("4")])
    answers = torch.tensor([[0], [1], [0], [0]])
    assert task.reward(comps, answers).tolist() == [1.0, 1.0, 0.0, 1.0]
    mask = task.completion_mask(comps)
    assert mask[0].sum() == len(tok("so \\boxed{4}.")["input_ids"]) + 1 and not mask[0, -1]
    assert extract_answer("a \\boxed{1} then \\boxed{x^{2}}") == "x^{2}"
    with pytest.raises(OptrunError, match="data_dir"):
        MathTask(str(tmp_path / "nowhere"), model_path=str(tmp_path / "model"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.jsonl").write_text(json.dumps({"question": "?"}) + "\n")
    with pytest.raises(OptrunError, match="problem"):
        MathTask(str(tmp_path / "bad"), model_path=str(tmp_path / "model"))


def test_collapse_and_samples_to_target():
    def run(acc, ent):
        rows = [{"rl_step": np.nan, "sft_accuracy": 0.3, "loss": 1.0}]
        rows += [{"rl_step": k + 1, "accuracy": a, "entropy": ent, "samples": 128 * (k + 1), "loss": 0.0}
                 for k, a in enumerate(acc)]
        return pd.DataFrame(rows)

    cfg = {"trainer": {"steps": 3}}
    assert not collapsed(run([0.4, 0.6, 0.5], 0.5), cfg) and collapsed(run([0.4, 0.6, 0.2], 0.5), cfg)
    assert collapsed(run([0.4, 0.6, 0.6], 0.05), cfg) and collapsed(run([0.4, 0.6], 0.5), cfg)
    assert kept_of_peak(run([0.4, 0.8, 0.6], 0.5), cfg) == pytest.approx(0.75)
    assert samples_to(run([0.4, 0.8, 0.6], 0.5), 0.6) == 256 and samples_to(run([0.4], 0.5), 0.9) == np.inf


def test_paper_scale_loads_a_local_model_and_math_file_and_steps(make_cfg, tmp_path):
    """The paper-scale composition on real files: a tiny LLaMA saved with a character tokenizer, a JSONL of
    two problems; two GRPO/CAPO steps on the CPU with the real loading code."""
    transformers = pytest.importorskip("transformers")
    from runner.models.hf import tiny_config

    tok = char_tokenizer(tmp_path / "model")
    transformers.AutoModelForCausalLM.from_config(tiny_config(len(tok))).save_pretrained(tmp_path / "model")
    (tmp_path / "math").mkdir()
    rows = [{"problem": "1+1?", "answer": "2"}, {"problem": "2*3?", "answer": "6"}]
    (tmp_path / "math" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = make_cfg("experiment=capo", "scale=paper", "device=cpu", "threads=1", "trainer.capo=true",
                   f"components.policy.module.path={tmp_path / 'model'}", "components.policy.module.dtype=float32",
                   f"trainer.source.task.data_dir={tmp_path / 'math'}", "trainer.source.task.max_new_tokens=4",
                   "trainer.steps=2", "trainer.prompts=2", "trainer.group=2", "trainer.eval_prompts=4",
                   "trainer.eval_every=1")
    execute(cfg, tmp_path / "run")
    r = metrics(tmp_path / "run").dropna(subset=["rl_step"])
    assert r.rl_step.tolist() == [1, 2] and r.samples.tolist() == [4, 8] and r.accuracy.notna().all()
