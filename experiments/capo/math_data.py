"""A math data set with a verifiable exact-answer reward, for the paper scale: a JSONL file of
{"problem": ..., "answer": ...} records (MATH-style; the answer is the final answer's text), tokenized
with the tokenizer of the model folder. It has the interface of `runner.data.tasks.AdditionTask`, so
`PromptSource` and the GRPO trainer use it unchanged:

- `sample(n, generator)`: prompts (n, prompt_len), left-padded with the tokenizer's pad token to the
  longest prompt of the file (capped at `max_prompt_len`, cut from the left), and the problems'
  indices (n, 1) as the "answers" (the strings stay here);
- `reward(completions, answers)`: 1.0 where the completion, cut at the first end token, states the
  answer: the content of its last \\boxed{...} (else its last line) equals the reference after
  normalisation (spaces, `$`, a trailing `.` removed);
- `completion_mask(completions)`: the tokens up to and including the first end token.

`stand_in: true` makes random problems over `vocab_size` tokens whose answer is one token (the reward:
the first completion token is it), so the paper-scale arm steps on the CPU without files.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from runner.errors import OptrunError

PROMPT = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\n"


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} in `text` (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def normalise(ans: str) -> str:
    return re.sub(r"\s+", "", ans).replace("$", "").rstrip(".")


def extract_answer(text: str) -> str:
    boxed = last_boxed(text)
    if boxed is not None:
        return normalise(boxed)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return normalise(lines[-1]) if lines else ""


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for k, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        row = json.loads(line)
        if "problem" not in row or "answer" not in row:
            raise OptrunError(f"{path}: line {k + 1} needs the keys 'problem' and 'answer', has {sorted(row)}")
        rows.append(row)
    if not rows:
        raise OptrunError(f"{path}: no problems")
    return rows


class MathTask:
    def __init__(self, data_dir: str | None = None, file: str = "train.jsonl", model_path: str | None = None,
                 max_prompt_len: int = 512, max_new_tokens: int = 1024, stand_in: bool = False,
                 vocab_size: int = 64, stand_in_problems: int = 64):
        self.answer_len = max_new_tokens
        if stand_in:  # one-token answers and a few new tokens (a CPU check)
            self.answer_len = min(max_new_tokens, 4)
            g = torch.Generator().manual_seed(0)
            self.vocab_size, self.eos, self.pad = vocab_size, None, 0
            self.prompts = torch.randint(1, vocab_size, (stand_in_problems, 8), generator=g)
            self.answer_tokens = torch.randint(1, vocab_size, (stand_in_problems,), generator=g)
            self.answers, self.tokenizer = None, None
            self.prompt_len = self.prompts.shape[1]
            return
        if not data_dir or not (Path(data_dir) / file).is_file():
            raise OptrunError(f"trainer.source.task.data_dir: expected a folder with {file}, got {data_dir!r}")
        if not model_path:
            raise OptrunError("trainer.source.task.model_path: the model folder (its tokenizer encodes the prompts)")
        from runner.models.hf import load_tokenizer

        self.tokenizer = tok = load_tokenizer(model_path)
        rows = read_jsonl(Path(data_dir) / file)
        self.answers = [normalise(str(r["answer"])) for r in rows]
        self.eos = tok.eos_token_id
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else (self.eos or 0)
        ids = [tok(PROMPT.format(problem=r["problem"]))["input_ids"][-max_prompt_len:] for r in rows]
        self.prompt_len = max(map(len, ids))
        self.prompts = torch.tensor([[self.pad] * (self.prompt_len - len(x)) + x for x in ids])
        self.vocab_size = len(tok)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.prompts), (n,), generator=generator, device=generator.device).cpu()
        return self.prompts[idx], idx[:, None]

    def completion_mask(self, completions: torch.Tensor) -> torch.Tensor:
        if self.eos is None:
            return torch.ones_like(completions, dtype=torch.bool)
        ended = (completions == self.eos).long().cumsum(1)
        return (ended == 0) | ((ended == 1) & (completions == self.eos))

    def reward(self, completions: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        idx = answers[:, 0].cpu()
        if self.tokenizer is None:
            return (completions[:, 0].cpu() == self.answer_tokens[idx]).float().to(completions.device)
        mask = self.completion_mask(completions).cpu()
        texts = [self.tokenizer.decode(c[m].tolist(), skip_special_tokens=True) for c, m in zip(completions.cpu(), mask)]
        return torch.tensor([float(extract_answer(t) == self.answers[i]) for t, i in zip(texts, idx.tolist())],
                            device=completions.device)

    def sft_batch(self, n: int, generator: torch.Generator):
        raise OptrunError("MathTask has no SFT batches: the paper scale starts RL from the model as loaded "
                          "(trainer.sft_steps: 0)")
