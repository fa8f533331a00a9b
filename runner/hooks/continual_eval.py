"""Continual evaluation: accuracy on every seen task's evaluation set, every `every` updates.

Each task's evaluation set is a fixed, seeded subset of its test split (capped at `max_samples`),
chosen once and never redrawn (the official code redraws it at each evaluation, which adds noise).
All seen tasks are evaluated in one batched forward pass. Logs `acc_task<k>` (percent) and the
running continual metrics of `runner.metrics.continual` (min_acc, wc_acc, wf<w>, wp<w>; acc and
forg at task ends), as `continual_eval/<name>`.

No host synchronisation per evaluation: a call leaves the per-task hit counts on the device and
returns `Deferred` values; when the metrics writer flushes, every pending evaluation is moved to the
host in one transfer and replayed through the tracker in order (its running metrics depend on the
whole sequence). `state_dict` resolves first, so a checkpoint always holds an up-to-date tracker.
"""
from __future__ import annotations

import math

import torch

from runner.data import ContinualData
from runner.errors import OptrunError
from runner.hooks.base import Hook, eval_mode
from runner.metrics.continual import ContinualMetrics
from runner.results import Deferred


class _Evaluation:
    """One evaluation waiting for the flush: hit counts of the seen tasks (on the device)."""

    __slots__ = ("hits", "seen", "task_end", "values")

    def __init__(self, hits: torch.Tensor, seen: int, task_end: bool):
        self.hits, self.seen, self.task_end, self.values = hits, seen, task_end, None


class ContinualValue(Deferred):
    """One logged metric of one pending evaluation; resolving any resolves every pending evaluation
    of its hook at once."""

    __slots__ = ("hook", "evaluation", "key")

    def __init__(self, hook: "ContinualEval", evaluation: _Evaluation, key: str):
        self.hook, self.evaluation, self.key = hook, evaluation, key

    @classmethod
    def resolve_all(cls, items: list["ContinualValue"]) -> list[float]:
        for hook in dict.fromkeys(it.hook for it in items):
            hook.resolve()
        return [it.evaluation.values.get(it.key, math.nan) for it in items]


class ContinualEval(Hook):
    name = "continual_eval"

    def __init__(self, every: int = 1, max_samples: int = 1000, windows: list[int] = (10, 100),
                 batch_size: int = 8192, at_start: bool = True, at_phase_end: bool = True, at_end: bool = True):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        if max_samples <= 0:
            raise OptrunError(f"hooks.continual_eval.max_samples: expected a positive integer, got {max_samples}")
        self.max_samples, self.windows, self.batch_size = max_samples, tuple(windows), batch_size

    def setup(self, state) -> None:
        data = state.data
        if not isinstance(data, ContinualData):
            raise OptrunError("hooks=continual_eval needs a continual dataset (e.g. dataset=split_digits)")
        g = self.stream(state)
        xs, ys, sizes = [], [], []
        for task in data.tasks:
            n = len(task.y_test)
            idx = torch.arange(n, device=task.y_test.device)
            if n > self.max_samples:
                idx = torch.randperm(n, generator=g, device=g.device)[: self.max_samples].sort().values
                idx = idx.to(task.y_test.device)
            xs.append(task.x_test[idx])
            ys.append(task.y_test[idx])
            sizes.append(len(idx))
        self.x, self.y = torch.cat(xs), torch.cat(ys)
        self.sizes = sizes
        self.ends = torch.tensor(sizes).cumsum(0).tolist()
        self.segment = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).to(self.y.device)
        self.sizes_t = torch.tensor(sizes, dtype=torch.float64, device=self.y.device)
        self.tracker = ContinualMetrics(data.n_tasks, self.windows)
        self.pending: list[_Evaluation] = []

    def columns(self, state) -> list[str]:
        tasks = [f"acc_task{k}" for k in range(1, state.data.n_tasks + 1)]
        return tasks + ["min_acc", "wc_acc", *(f"{m}{w}" for w in self.windows for m in ("wf", "wp")), "acc", "forg"]

    def hits(self, model: torch.nn.Module, seen: int) -> torch.Tensor:
        """Correct predictions per task 1..seen (float64, on the device), one forward pass (chunked
        only for very large sets); nothing is moved to the host."""
        n = self.ends[seen - 1]
        with eval_mode(model):
            if n <= self.batch_size:
                pred = model(self.x[:n]).argmax(-1)
            else:
                pred = torch.cat([model(self.x[i:min(i + self.batch_size, n)]).argmax(-1) for i in range(0, n, self.batch_size)])
            correct = (pred == self.y[:n]).to(torch.float64)
            return torch.zeros(seen, dtype=torch.float64, device=correct.device).index_add_(0, self.segment[:n], correct)

    def accuracies(self, model: torch.nn.Module, seen: int) -> list[float]:
        """Percent accuracy on tasks 1..seen (synchronises: for tests and comparisons)."""
        return (self.hits(model, seen) / self.sizes_t[:seen] * 100.0).tolist()

    def __call__(self, state) -> dict:
        seen = state.task or 1
        task_end = state.phase_end and state.step > 0
        ev = _Evaluation(self.hits(state.model, seen), seen, task_end)
        self.pending.append(ev)
        keys = [f"acc_task{k}" for k in range(1, seen + 1)] + ["min_acc", "wc_acc"]
        keys += [f"{m}{w}" for w in self.windows for m in ("wf", "wp")] + (["acc", "forg"] if task_end else [])
        return {k: ContinualValue(self, ev, k) for k in keys}

    def resolve(self) -> None:
        """Move every pending evaluation to the host at once and run them through the tracker in order."""
        if not self.pending:
            return
        n = self.tracker.n_tasks
        padded = torch.stack([torch.nn.functional.pad(ev.hits, (0, n - ev.seen)) for ev in self.pending])
        for ev, hits in zip(self.pending, (padded / self.sizes_t * 100.0).tolist()):
            accs = hits[:ev.seen]
            ev.values = {f"acc_task{k}": a for k, a in enumerate(accs, start=1)}
            ev.values.update(self.tracker.update(accs, ev.seen, task_end=ev.task_end))
        self.pending = []

    def state_dict(self) -> dict:
        self.resolve()
        return {"tracker": self.tracker.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        self.pending = []
        self.tracker.load_state_dict(sd["tracker"])
