"""The rollout trainer kind: GPOMDP against a direct computation, lockstep episodes, the vanilla policy
gradient through the engine (it learns CartPole, counts what it consumed, resumes its source), the
policies' log-probabilities, and language-model sampling on the seeded addition task."""
from __future__ import annotations

import io
import math

import pytest
import torch

from runner.data.tasks import AdditionTask, PromptSource
from runner.dispatch import build, execute
from runner.models.lm import TransformerLM
from runner.models.policy import GaussianMLPPolicy, LinearSoftmaxPolicy, SoftmaxMLPPolicy
from runner.models.sampling import completion_logits, generate, token_entropy, token_log_probs
from runner.trainers.rollout import discounted_rewards_to_go, gpomdp_surrogate

PG = ["trainer=policy_gradient", "components=linear_softmax_policy", "model=none", "dataset=none", "optimizer=none",
      "device=cpu", "threads=1"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def roundtrip(sd: dict) -> dict:
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_gpomdp_matches_the_sum_it_defines():
    g = gen()
    logits = torch.randn(3, 2, requires_grad=True)  # one parameter row per time step, shared by episodes
    rewards, gamma = torch.rand(2, 3, generator=g), 0.9
    mask = torch.tensor([[True, True, True], [True, True, False]])
    actions = torch.tensor([[0, 1, 1], [1, 0, 0]])
    logp = torch.log_softmax(logits, -1)[torch.arange(3), actions]
    (grad,) = torch.autograd.grad(gpomdp_surrogate(logp, rewards, mask, gamma), logits)
    expected = torch.zeros(3, 2)
    for e in range(2):
        for t in range(int(mask[e].sum())):
            later = sum(gamma ** s * rewards[e, s] for s in range(t, int(mask[e].sum())))
            (gt,) = torch.autograd.grad(torch.log_softmax(logits, -1)[t, actions[e, t]], logits)
            expected += gt * later / 2
    assert torch.allclose(grad, expected, atol=1e-6)
    rtg = discounted_rewards_to_go(rewards, mask, gamma)
    assert rtg[1, 2] == 0 and torch.isclose(rtg[0, 0], sum(gamma ** s * rewards[0, s] for s in range(3)))


def test_policies_score_what_they_sample():
    for pi in (LinearSoftmaxPolicy(4, 3, init_std=0.5), SoftmaxMLPPolicy(4, 3, hidden=[8, 8])):
        obs = torch.randn(5, 7, 4)
        a = pi.sample(obs, gen())
        assert a.shape == (5, 7) and a.dtype == torch.long
        dist = torch.distributions.Categorical(logits=pi(obs))
        assert torch.allclose(pi.log_prob(obs, a), dist.log_prob(a)) and torch.allclose(pi.entropy(obs), dist.entropy())
    gauss = GaussianMLPPolicy(3, 2, hidden=[8])
    obs = torch.randn(4, 3)
    act = gauss.sample(obs, gen())
    ref = torch.distributions.Normal(gauss(obs), gauss.log_std.exp())
    assert torch.allclose(gauss.log_prob(obs, act), ref.log_prob(act).sum(-1), atol=1e-6)
    assert torch.allclose(gauss.entropy(obs), ref.entropy().sum(-1), atol=1e-6)


def test_lockstep_episodes_are_whole_seeded_and_resumable():
    pytest.importorskip("gymnasium")
    from runner.data.sources import EnvSource

    pi = LinearSoftmaxPolicy(4, 2)
    src = EnvSource("CartPole-v1", max_episode_steps=50)
    src.setup(gen(1), "cpu")
    first = src.batch_rollouts(pi.sample, 4)
    assert first["observations"].shape == (4, 50, 4) and src.episodes == 4
    assert torch.equal(first["mask"].sum(1), first["lengths"]) and src.env_steps == int(first["lengths"].sum())
    ended = first["terminated"].any(1) | (first["lengths"] == 50)
    assert ended.all()  # each episode ran to its end: terminated or capped
    sd = roundtrip(src.state_dict())
    nxt = src.batch_rollouts(pi.sample, 4)
    again = EnvSource("CartPole-v1", max_episode_steps=50)
    again.setup(gen(99), "cpu")
    again.load_state_dict(sd)
    assert torch.equal(again.batch_rollouts(pi.sample, 4)["observations"], nxt["observations"])


def test_policy_gradient_learns_cartpole_and_counts_its_costs(make_cfg, tmp_path):
    pytest.importorskip("gymnasium")
    cfg = make_cfg(*PG, "trainer.steps=60", "components.policy.optimizer.lr=0.01", "log_every=1")
    summary = execute(cfg, tmp_path / "run")
    import pandas as pd

    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert summary["status"] == "completed"
    assert m.trajectories.iloc[-1] == 300 and abs(m.env_steps.iloc[-1] - m.episode_length.sum() * 5) < 0.5
    # learning, judged over three seeds: one seed's linear softmax policy can collapse onto one action
    # (seed 0 did on 2026-12-02, returns 28 -> 12, also with the code of the commit before; seeds 1, 2: 28 -> 61 / 52)
    gains = [m["return"].tail(10).mean() / m["return"].head(10).mean()]
    for seed in (1, 2):
        execute(make_cfg(*PG, "trainer.steps=60", "components.policy.optimizer.lr=0.01", f"seed={seed}"),
                tmp_path / f"seed{seed}")
        ms = pd.read_csv(tmp_path / f"seed{seed}" / "metrics.csv")
        gains.append(ms["return"].tail(10).mean() / ms["return"].head(10).mean())
    assert sorted(gains)[1] > 1.5, gains  # the median seed improves by half
    again = execute(make_cfg(*PG, "trainer.steps=60", "components.policy.optimizer.lr=0.01", "log_every=1"),
                    tmp_path / "again")
    assert again["metrics"]["return"] == summary["metrics"]["return"]  # the seed alone decides the episodes


def test_rollout_trainer_checkpoint_carries_source_and_counts(make_cfg):
    pytest.importorskip("gymnasium")
    state, trainer, _ = build(make_cfg(*PG))
    trainer.phases(state)
    trainer.step(state)
    sd = roundtrip(trainer.state_dict())
    state2, trainer2, _ = build(make_cfg(*PG, "seed=5"))
    trainer2.phases(state2)
    trainer2.load_state_dict(sd)
    state2.modules["policy"].load_state_dict(state.modules["policy"].state_dict())
    assert trainer2.counts == trainer.counts
    pi = state.modules["policy"]
    assert torch.equal(trainer.source.batch_rollouts(pi.sample, 2)["actions"],
                       trainer2.source.batch_rollouts(pi.sample, 2)["actions"])


def test_a_blown_up_policy_ends_the_run_diverged(make_cfg, tmp_path):
    pytest.importorskip("gymnasium")
    summary = execute(make_cfg(*PG, "trainer.steps=50", "trainer.diverge_above=1.0"), tmp_path / "run")
    assert summary["status"] == "diverged" and summary["diverged_at"] >= 1


def test_bad_rollout_settings_name_their_key(make_cfg, tmp_path):
    from runner.errors import OptrunError

    with pytest.raises(OptrunError, match="trainer.episodes"):
        execute(make_cfg(*PG, "trainer.episodes=0"), tmp_path / "a")
    with pytest.raises(OptrunError, match="NoSuchEnv"):
        execute(make_cfg(*PG, "trainer.source.env_id=NoSuchEnv-v0"), tmp_path / "b")


def test_addition_task_and_lm_sampling_agree_with_scoring():
    task = AdditionTask(2)
    prompts, answers = task.sample(64, gen())
    text = task.decode(torch.cat([prompts, answers], 1))
    for s in text:
        a, rest = s.split("+")
        b, c = rest.split("=")
        assert len(a) == len(b) == 2 and int(a) + int(b) == int(c) and len(c) == 3
    assert task.reward(answers, answers).all() and not task.reward((answers + 1) % 10, answers).any()
    model = TransformerLM(None, task.vocab_size, dim=32, layers=1, heads=2)
    tokens, logp = generate(model, prompts[:8], task.answer_len, gen(3))
    assert tokens.shape == (8, task.prompt_len + task.answer_len) and torch.equal(tokens[:, :task.prompt_len], prompts[:8])
    logits = completion_logits(model, tokens, task.prompt_len)
    assert torch.allclose(token_log_probs(logits, tokens[:, task.prompt_len:]), logp, atol=1e-5)
    assert (token_entropy(logits) <= math.log(task.vocab_size) + 1e-5).all()
    again, _ = generate(model, prompts[:8], task.answer_len, gen(3))
    assert torch.equal(tokens, again)
    assert torch.allclose(model.head(model.features(tokens)), model(tokens))


def test_prompt_source_resumes_and_pools():
    src = PromptSource(AdditionTask(2), batch_size=4, pool=10)
    src.setup(gen(0), "cpu")
    src.next()
    sd = roundtrip(src.state_dict())
    nxt = src.next()
    other = PromptSource(AdditionTask(2), batch_size=4, pool=10)
    other.setup(gen(0), "cpu")  # the same pool: the pool comes from the stream's start
    other.load_state_dict(sd)
    assert all(torch.equal(x, y) for x, y in zip(other.next(), nxt)) and other.drawn == 8
    x, y = AdditionTask(2).sft_batch(5, gen())
    assert x.shape == y.shape == (5, 8) and (y[:, :5] == -100).all() and (y[:, 5:] >= 0).all()


def test_a_local_hugging_face_model_loads_offline_and_samples(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    from runner.errors import OptrunError
    from runner.models.hf import LocalCausalLM, load_tokenizer, tiny_config

    ref = transformers.AutoModelForCausalLM.from_config(tiny_config(20))
    ref.save_pretrained(tmp_path)
    vocab = {w: i for i, w in enumerate("0 1 2 3 4 5 6 7 8 9 + = [UNK]".split())}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path)
    lm = LocalCausalLM(path=str(tmp_path))
    x = torch.tensor([load_tokenizer(str(tmp_path))("1 2 + 3 4 =")["input_ids"]])
    assert x.tolist() == [[1, 2, 10, 3, 4, 11]]
    assert torch.allclose(lm(x), ref(input_ids=x).logits) and torch.allclose(lm.head(lm.features(x)), lm(x), atol=1e-5)
    tokens, logp = generate(lm, x, 3, gen())
    assert torch.allclose(token_log_probs(completion_logits(lm, tokens, 6), tokens[:, 6:]), logp, atol=1e-5)
    assert LocalCausalLM(stand_in=True, n_classes=12)(x).shape == (1, 6, 12)
    with pytest.raises(OptrunError, match="model.path"):
        LocalCausalLM(path=str(tmp_path / "missing"))


def test_left_padded_cached_decoding_matches_each_prompt_alone():
    transformers = pytest.importorskip("transformers")
    from runner.models.hf import LocalCausalLM, tiny_config

    torch.manual_seed(0)
    lm = LocalCausalLM(stand_in=True, n_classes=20)
    lm.lm = transformers.AutoModelForCausalLM.from_config(tiny_config(20))  # a fresh random model, seeded above
    pad, eos = 0, 19
    short, long_ = [5, 6, 7], [3, 4, 5, 6, 7, 8]
    prompts = torch.tensor([[pad] * 3 + short, long_])
    tokens, logp = generate(lm, prompts, 5, gen(), greedy=True, pad_id=pad)
    for row, prompt in enumerate((short, long_)):
        alone, alone_logp = generate(lm, torch.tensor([prompt]), 5, gen(), greedy=True)
        assert torch.equal(tokens[row, 6:], alone[0, len(prompt):])
        assert torch.allclose(logp[row], alone_logp[0], atol=1e-5)

    class Uncached(torch.nn.Module):  # the same model without its key/value cache: re-runs the prefix
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, attention_mask=None):
            return self.inner(x, attention_mask=attention_mask)

    sampled, sampled_logp = generate(lm, prompts, 5, gen(7), pad_id=pad)
    again, again_logp = generate(Uncached(lm), prompts, 5, gen(7), pad_id=pad)
    assert torch.equal(sampled, again) and torch.allclose(sampled_logp, again_logp, atol=1e-5)
    rescored = token_log_probs(completion_logits(lm, sampled, 6, pad_id=pad), sampled[:, 6:])
    assert torch.allclose(rescored, sampled_logp, atol=1e-4)
    eos = int(tokens[0, 6])  # the first greedy token of row 0 as the end token: row 0 ends at once
    ended, ended_logp = generate(lm, prompts, 5, gen(), greedy=True, pad_id=pad, eos_id=eos)
    assert ended.shape == (2, 11) and (ended[0, 6:] == eos).all()
    one, one_logp = generate(lm, prompts[:1], 5, gen(), greedy=True, pad_id=pad, eos_id=eos)
    assert torch.equal(one, ended[:1]) and (one_logp[0, 1:] == 0).all()  # stopped: the rest filled
    with pytest.raises(Exception, match="attention mask"):
        generate(TransformerLM(None, 20, dim=16, layers=1, heads=2), prompts, 2, gen(), pad_id=pad)
