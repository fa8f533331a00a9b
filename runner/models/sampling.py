"""Sampling from a causal language model and scoring what was sampled: what RL post-training of a
language model (GRPO-style) and unlearning attacks need, written for the tiny models of the smoke scale
and for any `model(tokens) -> logits (B, L, V)` (a local Hugging Face model wrapped to return logits).

    tokens, logp = generate(model, prompts, max_new_tokens, generator)     # no graph
    logits = completion_logits(model, tokens, prompt_len)                  # with graph, (B, N, V)
    token_log_probs(logits, tokens[:, prompt_len:]), token_entropy(logits)

Decoding re-runs the whole prefix at each new token for optrun's own tiny models (for prompts of a
dozen tokens and answers of a few, cheaper than a cache); a model that offers `cached_logits` (the local
Hugging Face wrapper) decodes with its key/value cache, as long completions need. Left-padded prompts
(`pad_id`) are masked out of attention, and `eos_id` ends a completion.
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError


def token_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per position: (..., V), (...) -> (...)."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The entropy of each position's next-token distribution, in nats: (..., V) -> (...)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def _call(model, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return model(tokens)
    try:
        return model(tokens, attention_mask=mask)
    except TypeError as e:
        raise OptrunError(f"pad_id: {type(model).__name__} takes no attention mask (left-padded prompts need one)") from e


def attention_mask_for(prompts: torch.Tensor, pad_id: int | None, new: int) -> torch.Tensor | None:
    """The attention mask of left-padded prompts followed by `new` tokens: 0 on the padding, 1 elsewhere
    (None without a pad id: nothing to mask)."""
    if pad_id is None:
        return None
    return torch.cat([(prompts != pad_id).long(), prompts.new_ones(prompts.shape[0], new)], dim=1)


def completion_logits(model, tokens: torch.Tensor, prompt_len: int, pad_id: int | None = None) -> torch.Tensor:
    """The logits that predict tokens[:, prompt_len:], i.e. the model's outputs at positions
    prompt_len - 1 ... L - 2 (B, L - prompt_len, V), with the graph. `pad_id`: the prompts are
    left-padded with it (the padding is masked out of attention; completion tokens always count)."""
    if not 0 < prompt_len < tokens.shape[1]:
        raise OptrunError(f"completion_logits: prompt_len must be in 1..{tokens.shape[1] - 1}, got {prompt_len}")
    mask = attention_mask_for(tokens[:, :prompt_len], pad_id, tokens.shape[1] - 1 - prompt_len)
    return _call(model, tokens[:, :-1], mask)[:, prompt_len - 1:]


@torch.no_grad()
def generate(model, prompts: torch.Tensor, max_new_tokens: int, generator: torch.Generator,
             temperature: float = 1.0, greedy: bool = False, pad_id: int | None = None,
             eos_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `max_new_tokens` after each prompt (B, P) from softmax(logits / temperature), drawing only
    from `generator` (greedy: the argmax, no draws). Returns the full sequences (B, P + N) and the
    sampling policy's log-probabilities of the new tokens (B, N) at temperature 1 (what a ratio
    pi_new / pi_old needs). The model's training mode is left as it was (dropout off while sampling).

    `pad_id`: prompts are left-padded with it (masked out of attention). `eos_id`: a sequence that has
    produced it produces only `eos_id` after it, and decoding stops once every sequence has (the rest is
    filled with `eos_id`, log-probability 0): callers mask what follows the first end token. A model
    with `cached_logits(tokens, cache, attention_mask) -> (last logits, cache)` (a local Hugging Face
    model) decodes with its key/value cache, one new token per call; others re-run the prefix."""
    if max_new_tokens <= 0:
        raise OptrunError(f"generate: max_new_tokens must be positive, got {max_new_tokens}")
    if not greedy and not temperature > 0:
        raise OptrunError(f"generate: temperature must be positive, got {temperature}")
    was_training = model.training
    model.eval()
    n, p = prompts.shape
    mask, cache = attention_mask_for(prompts, pad_id, 0), None
    cached = hasattr(model, "cached_logits")
    done = torch.zeros(n, dtype=torch.bool, device=prompts.device)
    tokens, logps = prompts, []
    try:
        for _ in range(max_new_tokens):
            if cached:
                logits, cache = model.cached_logits(tokens if cache is None else tokens[:, -1:], cache, mask)
            else:
                logits = _call(model, tokens, mask)[:, -1]
            logits = logits.float()
            if greedy:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            if eos_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                done = done | (nxt == eos_id)
            logps.append(token_log_probs(logits, nxt))
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            mask = None if mask is None else torch.cat([mask, mask.new_ones(n, 1)], dim=1)
            if eos_id is not None and bool(done.all()):
                break
    finally:
        model.train(was_training)
    left = p + max_new_tokens - tokens.shape[1]
    if left:
        tokens = torch.cat([tokens, tokens.new_full((n, left), eos_id)], dim=1)
        logps.append(torch.zeros(n, left, device=tokens.device))
    return tokens, torch.cat([lp.reshape(n, -1) for lp in logps], dim=1)
