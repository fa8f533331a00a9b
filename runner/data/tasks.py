"""Tasks with a verifiable reward, made in code and seeded: prompts for a language model to complete,
and a checker of completions. The smoke scale of LLM post-training papers runs on these.

`AdditionTask(digits)`: prompts `ab+cd=` (operands of `digits` digits, leading zeros kept), the answer
is the sum written with `digits + 1` digits (`57+68=125`, `03+04=007`), so every answer has the same
length and no end token is needed. The vocabulary is the ten digits, `+` and `=`.

`PromptSource(task, batch_size)` is the engine's data source for it: each `next()` draws a batch of
prompts and their answers from the source's own stream.
"""
from __future__ import annotations

import torch

from runner.data.sources import Source, _integer, _restore
from runner.errors import OptrunError


class AdditionTask:
    VOCAB = list("0123456789+=")

    def __init__(self, digits: int = 2):
        _integer("task.digits", digits)
        self.digits = digits
        self.vocab_size = len(self.VOCAB)
        self.plus, self.equals = self.VOCAB.index("+"), self.VOCAB.index("=")
        self.prompt_len = 2 * digits + 2
        self.answer_len = digits + 1

    def _digits(self, values: torch.Tensor, width: int) -> torch.Tensor:
        """(n,) integers -> (n, width) digit tokens, most significant first."""
        powers = 10 ** torch.arange(width - 1, -1, -1, device=values.device)
        return (values[:, None] // powers) % 10

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n prompts (n, prompt_len) and their answers (n, answer_len), uniform over operand pairs."""
        dev = generator.device
        ab = torch.randint(10 ** self.digits, (2, n), generator=generator, device=dev)
        col = lambda tok: torch.full((n, 1), tok, device=dev, dtype=torch.long)
        prompts = torch.cat([self._digits(ab[0], self.digits), col(self.plus), self._digits(ab[1], self.digits),
                             col(self.equals)], dim=1)
        return prompts, self._digits(ab[0] + ab[1], self.answer_len)

    def reward(self, completions: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """1.0 where the first answer_len tokens of a completion are exactly the answer, else 0.0."""
        return (completions[:, :self.answer_len] == answers).all(dim=1).float()

    def sft_batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing on whole problems: inputs (n, L - 1) and next-token targets (n, L - 1), with the
        targets inside the prompt set to -100 (cross_entropy's ignore_index): only the answer is learned."""
        prompts, answers = self.sample(n, generator)
        seq = torch.cat([prompts, answers], dim=1)
        targets = seq[:, 1:].clone()
        targets[:, :self.prompt_len - 1] = -100
        return seq[:, :-1], targets

    def decode(self, tokens: torch.Tensor) -> list[str]:
        return ["".join(self.VOCAB[int(t)] for t in row) for row in tokens.reshape(-1, tokens.shape[-1])]


class PromptSource(Source):
    """Batches of (prompts, answers) from a task, drawn from the source's stream (a fixed `pool` of
    problems instead, when given: the same `pool` prompts every epoch, as a training set is)."""

    def __init__(self, task, batch_size: int = 16, pool: int | None = None):
        if isinstance(task, dict):
            raise OptrunError("source.task: expected a task object (a _target_ such as runner.data.tasks.AdditionTask)")
        self.task, self.batch_size, self.pool = task, _integer("source.batch_size", batch_size), \
            _integer("source.pool", pool, allow_none=True)
        self.drawn = 0

    def setup(self, generator: torch.Generator, device=None) -> None:
        super().setup(generator, device)
        if self.pool is not None:
            self.pool_prompts, self.pool_answers = self.task.sample(self.pool, generator)

    def next(self, n: int | None = None, **context) -> tuple[torch.Tensor, torch.Tensor]:
        n = n or self.batch_size
        self.drawn += n
        if self.pool is None:
            p, a = self.task.sample(n, self.generator)
        else:
            idx = torch.randint(self.pool, (n,), generator=self.generator, device=self.generator.device)
            p, a = self.pool_prompts[idx], self.pool_answers[idx]
        return p.to(self.device), a.to(self.device)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "drawn": self.drawn}

    def load_state_dict(self, sd: dict) -> None:
        _restore(self.generator, sd["generator"])
        self.drawn = sd["drawn"]
