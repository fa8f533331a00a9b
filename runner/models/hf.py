"""A causal language model from a local folder (a Hugging Face checkpoint: config, weights, tokenizer),
wrapped to look like optrun's own `TransformerLM`: token ids (B, L) -> logits (B, L, V), `features(x)`
(the last layer's input, so logits = head(features)) and `head`. The paper scale of LLM post-training
papers composes it; nothing is ever downloaded (`local_files_only`), and a missing folder is an error
that names the key and the path.

`stand_in: true` builds a tiny randomly initialised model of the same family instead (the CPU check
that a paper-scale arm builds and steps), with `vocab_size` tokens.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import nn

from runner.errors import OptrunError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise OptrunError("model: a local Hugging Face model needs transformers (pip install -e '.[llm]')") from e
    return transformers


def positions(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Position ids that start at 0 on each row's first real token (left padding gets 0 too)."""
    return None if attention_mask is None else (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def tiny_config(vocab_size: int = 64, dim: int = 32, layers: int = 2, heads: int = 4):
    """A LLaMA-family config small enough for a CPU test."""
    return _transformers().LlamaConfig(vocab_size=vocab_size, hidden_size=dim, intermediate_size=2 * dim,
                                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                                       max_position_embeddings=256, tie_word_embeddings=False)


class LocalCausalLM(nn.Module):
    def __init__(self, input_shape=None, n_classes: int | None = None, path: str | None = None, dtype: str = "float32",
                 stand_in: bool = False, vocab_size: int = 64):
        super().__init__()
        tf = _transformers()
        if dtype not in DTYPES:
            raise OptrunError(f"model.dtype: unknown '{dtype}' (expected one of: {', '.join(DTYPES)})")
        if stand_in:
            self.lm = tf.AutoModelForCausalLM.from_config(tiny_config(n_classes or vocab_size))
        else:
            if not path or not (Path(path) / "config.json").is_file():
                raise OptrunError(f"model.path: expected a local Hugging Face model folder with config.json, got {path!r}")
            self.lm = tf.AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=DTYPES[dtype])
        self.vocab_size = self.lm.config.vocab_size
        # transformers renamed the cache argument (`past_key_values` -> `cache`); use the one this version has
        self._cache_arg = "cache" if "cache" in inspect.signature(self.lm.forward).parameters else "past_key_values"

    @property
    def head(self) -> nn.Module:
        """The output layer, looked up rather than registered a second time (a module registered under two
        names loses requires_grad through torch.func.functional_call)."""
        return self.lm.get_output_embeddings()

    def features(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm.model(input_ids=x, attention_mask=attention_mask,
                             position_ids=positions(attention_mask)).last_hidden_state

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm(input_ids=x, attention_mask=attention_mask, position_ids=positions(attention_mask)).logits

    def cached_logits(self, x: torch.Tensor, cache=None, attention_mask: torch.Tensor | None = None):
        """Decoding with the key/value cache: `x` is the whole prompt on the first call (cache None), then
        the one new token per row; `attention_mask` covers everything so far. Returns the last position's
        logits and the cache (what `runner.models.sampling.generate` uses)."""
        pos = None if attention_mask is None else positions(attention_mask)[:, -x.shape[1]:]
        out = self.lm(input_ids=x, attention_mask=attention_mask, position_ids=pos, use_cache=True, **{self._cache_arg: cache})
        return out.logits[:, -1], out.past_key_values


def load_tokenizer(path: str):
    """The tokenizer saved beside a local model (never downloaded)."""
    if not path or not Path(path).is_dir():
        raise OptrunError(f"model.path: expected a local folder with a tokenizer, got {path!r}")
    return _transformers().AutoTokenizer.from_pretrained(path, local_files_only=True)
