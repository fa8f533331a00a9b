"""Sampling from a causal language model and scoring what was sampled: what RL post-training of a
language model (GRPO-style) and unlearning attacks need, written for the tiny models of the smoke scale
and for any `model(tokens) -> logits (B, L, V)` (a local Hugging Face model wrapped to return logits).

    tokens, logp = generate(model, prompts, max_new_tokens, generator)     # no graph
    logits = completion_logits(model, tokens, prompt_len)                  # with graph, (B, N, V)
    token_log_probs(logits, tokens[:, prompt_len:]), token_entropy(logits)

Decoding re-runs the whole prefix at each new token (no KV cache): for prompts of a dozen tokens and
answers of a few, that is cheaper than the bookkeeping of a cache, and it works for every model.
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


def completion_logits(model, tokens: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """The logits that predict tokens[:, prompt_len:], i.e. the model's outputs at positions
    prompt_len - 1 ... L - 2 (B, L - prompt_len, V), with the graph."""
    if not 0 < prompt_len < tokens.shape[1]:
        raise OptrunError(f"completion_logits: prompt_len must be in 1..{tokens.shape[1] - 1}, got {prompt_len}")
    return model(tokens[:, :-1])[:, prompt_len - 1:]


@torch.no_grad()
def generate(model, prompts: torch.Tensor, max_new_tokens: int, generator: torch.Generator,
             temperature: float = 1.0, greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `max_new_tokens` after each prompt (B, P) from softmax(logits / temperature), drawing only
    from `generator` (greedy: the argmax, no draws). Returns the full sequences (B, P + N) and the
    sampling policy's log-probabilities of the new tokens (B, N) at temperature 1 (what a ratio
    pi_new / pi_old needs). The model's training mode is left as it was (dropout off while sampling)."""
    if max_new_tokens <= 0:
        raise OptrunError(f"generate: max_new_tokens must be positive, got {max_new_tokens}")
    if not greedy and not temperature > 0:
        raise OptrunError(f"generate: temperature must be positive, got {temperature}")
    was_training = model.training
    model.eval()
    tokens, logps = prompts, []
    try:
        for _ in range(max_new_tokens):
            logits = model(tokens)[:, -1].float()
            if greedy:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            logps.append(token_log_probs(logits, nxt))
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
    finally:
        model.train(was_training)
    return tokens, torch.stack(logps, dim=1)
