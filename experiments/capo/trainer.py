"""GRPO with and without CAPO's curvature-aware token mask, after a supervised warm start, on a
prompt source with a verifiable reward (experiments/capo/README.md has the sources and the choices).

Phases: `sft` (teacher forcing on the task's answers, its own AdamW; skipped when `sft_steps` is 0),
then `rl`: each step draws `prompts` prompts, samples a group of `group` completions per prompt from
the current policy, scores them and takes `inner_steps` optimizer steps on that batch.

GRPO (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300, eq. 3 with the outcome-supervision advantage
of Sec. 4.1.2): A_i = (r_i - mean(r_group)) / (std(r_group) + eps) for every token of completion i, and
the objective, maximised,

    J = 1/G sum_i 1/|o_i| sum_t min(rho_t A_i, clip(rho_t, 1 - epsilon, 1 + epsilon) A_i),
    rho_t = pi(o_t | q, o_<t) / pi_old(o_t | q, o_<t),

with pi_old the sampling policy; the KL penalty to a reference model is left out (beta = 0).

CAPO's mask (`capo.py`): before each update the optimizer's own step for the unmasked objective is
computed without being applied (`trial_update`), each sampled token's logit change dz under it is
predicted (`curvature: network`: the logits at the trial parameters minus the current ones; `head`:
the last layer alone, dz = dW h with the features fixed), and its KL is predicted with the curvature of
the last layer, the softmax Fisher: KL ~ 1/2 dz^T (diag pi - pi pi^T) dz. Tokens whose predicted KL
exceeds `delta` leave the objective (their terms are zeroed, the normaliser kept), and the update is
taken on the rest. The GRPO arms log the same prediction for the step they take, and mask nothing.

Logged per RL step: reward (mean over the sampled completions), accuracy (greedy exact match on a fixed
held-out set, every `eval_every` steps), entropy (nats, mean over the sampled tokens), masked_fraction
(applied) and flagged_fraction (predicted KL > delta, either arm), kl_predicted / kl_realised (the
curvature model's KL(pi_new || pi_old) of the applied update and the exact one, mean per token),
kl_predicted_head (the head-only prediction of the proposed step),
grad_norm, clip_fraction, and the counts `samples` (completions) and `tokens`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from experiments.capo.capo import predicted_kl, trial_update
from runner.errors import OptrunError
from runner.models.sampling import attention_mask_for, generate, token_entropy
from runner.trainers.base import Phase, TrainState
from runner.trainers.rollout import RolloutTrainer


def distinct_forward(model, tokens: torch.Tensor) -> torch.Tensor:
    """model(tokens) without a graph, each distinct row of `tokens` run once and its logits copied to the
    repeats. Why: a group's completions share their prompt and, once the policy is sure, mostly their
    answer too, so the no-grad passes (decoding, the logits at the trial and at the new parameters) were
    mostly repeats (a fifth of a smoke run's training-loop CPU time). The result is the same up to float
    rounding, and on this project's CPU machine bit for bit: measured there, a row's outputs do not depend
    on the other rows of a matrix product with 8 rows or more (fewer take another kernel; the floor of 8
    sequences keeps well above that); that is a property of the BLAS, not a promise. On other devices
    (cuBLAS picks kernels by shape) and with a graph (the gradient would sum the repeats first) the batch
    runs whole."""
    if torch.is_grad_enabled() or tokens.device.type != "cpu" or tokens.dim() != 2:
        return model(tokens)
    rows, inverse = torch.unique(tokens, dim=0, return_inverse=True)
    if len(rows) < 8 or len(rows) == len(tokens):
        return model(tokens)
    return model(rows)[inverse]


class Distinct(torch.nn.Module):
    """`model` for `generate`, its forward passes through `distinct_forward` (train/eval reach `model`)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.train(model.training)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return distinct_forward(self.model, tokens)


def group_advantages(rewards: torch.Tensor, group: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's outcome advantage: rewards (B,) in consecutive groups of `group` -> (r - mean) / (std + eps)
    within each group (the sample standard deviation; a group of equal rewards gets zeros)."""
    r = rewards.float().view(-1, group)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + eps)).reshape(-1)


def grpo_terms(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, epsilon: float):
    """Per-token clipped surrogate (B, N) (to maximise) and the mask of tokens whose ratio was clipped."""
    ratio = torch.exp(logp - old_logp)
    a = adv[:, None]
    unclipped, clipped = ratio * a, ratio.clamp(1 - epsilon, 1 + epsilon) * a
    return torch.minimum(unclipped, clipped), (clipped < unclipped).detach()


def grpo_loss(terms: torch.Tensor, valid: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """-J: each completion's mean over its valid tokens, then the mean over completions. `keep` zeroes
    masked tokens without renormalising, so a masked token only removes its own term."""
    w = valid.float() if keep is None else (valid & keep).float()
    per_seq = (terms * w).sum(1) / valid.float().sum(1).clamp_min(1)
    return -per_seq.mean()


class GRPOCAPO(RolloutTrainer):
    counted = ("samples", "tokens")

    def __init__(self, steps: int = 150, source=None, prompts: int = 16, group: int = 8, inner_steps: int = 2,
                 epsilon: float = 0.2, temperature: float = 1.0, capo: bool = False, delta: float = 0.02,
                 curvature: str = "network",
                 sft_steps: int = 0, sft_batch: int = 64, sft_lr: float = 1e-3, eval_prompts: int = 256,
                 eval_every: int = 10, adv_eps: float = 1e-4, diverge_above: float = 1e6):
        super().__init__(steps, source, diverge_above)
        for key, v in (("prompts", prompts), ("group", group), ("inner_steps", inner_steps),
                       ("eval_prompts", eval_prompts), ("eval_every", eval_every), ("sft_batch", sft_batch)):
            if not isinstance(v, int) or v <= 0:
                raise OptrunError(f"trainer.{key}: expected a positive integer, got {v!r}")
        if group < 2:
            raise OptrunError(f"trainer.group: GRPO needs at least 2 completions per prompt, got {group}")
        if not isinstance(sft_steps, int) or sft_steps < 0:
            raise OptrunError(f"trainer.sft_steps: expected an integer >= 0, got {sft_steps!r}")
        if not 0 < epsilon < 1 or not delta > 0:
            raise OptrunError(f"trainer.epsilon must be in (0, 1) and trainer.delta > 0, got {epsilon}, {delta}")
        if curvature not in ("network", "head"):
            raise OptrunError(f"trainer.curvature: expected network or head, got {curvature!r}")
        self.curvature = curvature
        self.prompts, self.group, self.inner_steps, self.epsilon = prompts, group, inner_steps, epsilon
        self.temperature, self.capo, self.delta, self.adv_eps = temperature, bool(capo), delta, adv_eps
        self.sft_steps, self.sft_batch_size, self.sft_lr = sft_steps, sft_batch, sft_lr
        self.eval_prompts, self.eval_every = eval_prompts, eval_every
        self.sft_opt, self.phase, self.rl_step = None, "rl", 0
        self.pad_id = self.eos_id = None  # set in setup for a tokenized data set

    # -- setup
    def setup(self, state: TrainState) -> None:
        if self.source is None or not hasattr(self.source, "task"):
            raise OptrunError("trainer.source: GRPO needs a prompt source (runner.data.tasks.PromptSource)")
        self.task = self.source.task
        # a tokenized data set left-pads its prompts and ends completions with the end token (paper scale)
        tokenized = getattr(self.task, "tokenizer", None) is not None
        self.pad_id, self.eos_id = (self.task.pad, self.task.eos) if tokenized else (None, None)
        self.gen = state.stream("trainer.sample")
        self.eval_set = self.task.sample(self.eval_prompts, state.stream("trainer.eval"))
        self.eval_set = tuple(t.to(state.device) for t in self.eval_set)
        policy = state.modules["policy"]
        if self.sft_steps:
            self.sft_gen = state.stream("trainer.sft")
            self.sft_opt = torch.optim.AdamW(policy.parameters(), lr=self.sft_lr)

    def columns(self, state: TrainState) -> list[str]:
        """metrics.csv has a fixed header: the RL columns exist from the first (SFT) row on."""
        return ["sft_loss", "sft_accuracy", "rl_step", "reward", "accuracy", "entropy", "masked_fraction",
                "flagged_fraction", "kl_predicted", "kl_realised", "kl_predicted_proposed", "kl_predicted_head", "grad_norm",
                "clip_fraction", *self.counted]

    def phases(self, state: TrainState) -> list[Phase]:
        super().phases(state)
        rl = Phase(steps=self.steps, name="rl")
        return [Phase(steps=self.sft_steps, name="sft"), rl] if self.sft_steps else [rl]

    def begin_phase(self, state: TrainState, phase: Phase) -> None:
        self.phase = phase.name

    def step(self, state: TrainState) -> dict:
        return self.sft_step(state) if self.phase == "sft" else self.rl_step_(state)

    # -- the warm start
    def sft_step(self, state: TrainState) -> dict:
        policy = state.modules["policy"]
        x, y = self.task.sft_batch(self.sft_batch_size, self.sft_gen)
        x, y = x.to(state.device), y.to(state.device)
        loss = F.cross_entropy(policy(x).flatten(0, 1).float(), y.flatten(), ignore_index=-100)
        self.sft_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.sft_opt.step()
        out = {"loss": self.guarded(loss.detach()), "sft_loss": loss.detach()}
        if (state.step + 1) % self.eval_every == 0 or state.step + 1 == self.sft_steps:
            out["sft_accuracy"] = self.evaluate(policy)
        return out

    @torch.no_grad()
    def evaluate(self, policy) -> float:
        """Greedy exact match on the fixed held-out prompts (the accuracy the claims read)."""
        prompts, answers = self.eval_set
        tokens, _ = generate(self.sampler(policy), prompts, self.task.answer_len, self.gen, greedy=True, pad_id=self.pad_id,
                             eos_id=self.eos_id)
        return float(self.task.reward(tokens[:, prompts.shape[1]:], answers).mean())

    def sampler(self, policy):
        """What `generate` decodes with: the policy, run once per distinct sequence (`Distinct`) unless
        decoding needs more than its plain forward (left-padded prompts, an end token, a key/value cache)."""
        plain = self.pad_id is None and self.eos_id is None and not hasattr(policy, "cached_logits")
        return Distinct(policy) if plain else policy

    def logits_nograd(self, policy, inputs, masked) -> torch.Tensor:
        """policy(inputs) without a graph; each distinct sequence once where no attention mask is needed."""
        return policy(inputs, **masked) if masked else distinct_forward(policy, inputs)

    # -- GRPO (and CAPO)
    def rl_step_(self, state: TrainState) -> dict:
        policy, opt = state.modules["policy"], state.optimizers["policy"]
        prompts, answers = self.source.next(self.prompts)
        prompts, answers = prompts.repeat_interleave(self.group, 0), answers.repeat_interleave(self.group, 0)
        tokens, old_logp = generate(self.sampler(policy), prompts, self.task.answer_len, self.gen, temperature=self.temperature,
                                   pad_id=self.pad_id, eos_id=self.eos_id)
        P = prompts.shape[1]
        completions = tokens[:, P:]
        valid = self.task.completion_mask(completions) if hasattr(self.task, "completion_mask") \
            else torch.ones_like(completions, dtype=torch.bool)
        rewards = self.task.reward(completions, answers)
        adv = group_advantages(rewards, self.group, self.adv_eps)
        self.count("samples", completions.shape[0])
        self.count("tokens", int(valid.sum()))
        logs = [self.update(policy, opt, tokens, P, old_logp, adv, valid) for _ in range(self.inner_steps)]
        if "policy" in state.schedulers:
            state.schedulers["policy"].step()
        out = {k: sum(float(d[k]) for d in logs) / len(logs) for k in logs[0] if k != "entropy"}
        self.rl_step += 1
        out.update(entropy=logs[0]["entropy"], reward=float(rewards.mean()), rl_step=self.rl_step,
                   **self.count_metrics())
        if self.rl_step % self.eval_every == 0 or self.rl_step == self.steps:
            out["accuracy"] = self.evaluate(policy)
        flat = torch.cat([p.detach().reshape(-1) for p in self.policy_params(state)])
        out["loss"] = self.guarded(out["loss"], flat)
        return out

    def update(self, policy, opt, tokens, P, old_logp, adv, valid) -> dict:
        """One optimizer step on the batch: the proposed step and its predicted per-token KL, the mask
        (CAPO), the step, and the realised KL(pi_new || pi_old) on the same tokens."""
        params = tuple(p for p in policy.parameters() if p.requires_grad)
        inputs = tokens[:, :-1]
        mask = attention_mask_for(tokens[:, :P], self.pad_id, inputs.shape[1] - P)
        masked = {} if mask is None else {"attention_mask": mask}  # the prompts' left padding
        h = policy.features(inputs, **masked)[:, P - 1:]
        logits = policy.head(h).float()
        logp_all = torch.log_softmax(logits, -1)
        logp = logp_all.gather(-1, tokens[:, P:, None]).squeeze(-1)
        terms, clipped = grpo_terms(logp, old_logp, adv, self.epsilon)
        loss = grpo_loss(terms, valid)
        grads = torch.autograd.grad(loss, params, retain_graph=self.capo, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        pi, n = logp_all.detach().exp(), valid.float().sum()
        head, hd = policy.head.weight, h.detach().float()
        keep = torch.ones_like(valid)
        if self.capo:  # predict the step before taking it, and mask
            proposed = trial_update(opt, list(params), grads)
            kl_head, kl_tok = self.predict(policy, params, proposed, inputs, masked, P, hd, logits, pi, proposed[next(i for i, p in enumerate(params) if p is head)])
            flagged = (kl_tok > self.delta) & valid
            keep = ~flagged
            if flagged.any():
                loss = grpo_loss(terms, valid, keep)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        opt.zero_grad(set_to_none=True)
        for p, g in zip(params, grads):
            p.grad = g
        grad_norm = torch.cat([g.reshape(-1) for g in grads]).norm()
        before = head.detach().clone()
        opt.step()
        with torch.no_grad():
            new_logits = self.logits_nograd(policy, inputs, masked)[:, P - 1:].float()
            new_logp = torch.log_softmax(new_logits, -1)
            kl_real = ((new_logp.exp() * (new_logp - logp_all.detach())).sum(-1) * valid).sum() / n
            kl_pred = (predicted_kl(new_logits - logits.detach(), pi) * valid).sum() / n
            entropy = (token_entropy(logits.detach()) * valid).sum() / n
            if not self.capo:  # GRPO's proposal is the step just taken (trial_update reproduces opt.step): read it off
                kl_head = predicted_kl(hd @ (head.detach() - before).float().T, pi)
                kl_tok = predicted_kl(new_logits - logits.detach(), pi) if self.curvature == "network" else kl_head
                flagged = (kl_tok > self.delta) & valid
        return {"loss": loss.detach(), "grad_norm": grad_norm, "kl_predicted": kl_pred, "kl_realised": kl_real,
                "kl_predicted_proposed": (kl_tok * valid).sum() / n, "kl_predicted_head": (kl_head * valid).sum() / n,
                "masked_fraction": float((~keep & valid).sum() / n), "flagged_fraction": float(flagged.sum() / n),
                "clip_fraction": float((clipped & valid).sum() / n), "entropy": entropy}

    @torch.no_grad()
    def predict(self, policy, params, proposed, inputs, masked, P, hd, logits, pi, head_delta):
        """Per-token predicted KL of a proposed step: head only (features fixed) and the chosen model. The
        network's logits at the trial parameters come from swapping each parameter's data for a moment
        (`.data`, so the autograd graph that saved the parameters stays valid)."""
        kl_head = predicted_kl(hd @ head_delta.float().T, pi)
        if self.curvature == "head":
            return kl_head, kl_head
        saved = [p.data for p in params]
        try:
            for p, d in zip(params, proposed):
                p.data = p.data + d
            dz = self.logits_nograd(policy, inputs, masked)[:, P - 1:].float() - logits.detach()
        finally:
            for p, s in zip(params, saved):
                p.data = s
        return kl_head, predicted_kl(dz, pi)

    # -- resume
    def extra_state(self) -> dict:
        sd = {"rl_step": self.rl_step}
        if self.sft_opt is not None:
            sd["sft_opt"] = self.sft_opt.state_dict()
        return sd

    def load_extra_state(self, sd: dict) -> None:
        self.rl_step = sd.get("rl_step", 0)
        if self.sft_opt is not None and "sft_opt" in sd:
            self.sft_opt.load_state_dict(sd["sft_opt"])

