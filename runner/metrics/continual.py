"""Continual-evaluation metrics of De Lange et al. (ICLR 2023), following the official code.

Notation: A_k(n) is the accuracy on task k after n updates, t_k the last update of task k, j the
task being learned. Each evaluation gives the accuracies of the tasks seen so far (1..j).

- ACC (task ends): mean_k A_k(t_j);  FORG: mean_{k<j} A_k(t_k) - A_k(t_j).
- min-ACC: mean_{k<j} of min over evaluations after t_k of A_k(n).
- WC-ACC: (1/j) A_j(n) + (1 - 1/j) min-ACC.
- WF^w (WP^w): per task, the largest drop (rise) A_a - A_b (A_b - A_a), a before b, between two of
  the last w evaluations of that task; max over the run; averaged over the tasks seen so far
  (the current one included). w counts evaluations, not iterations.

The tracker is incremental (O(w) per task and evaluation) so a hook can log running values each
iteration; `from_history` replays a whole accuracy curve through it.
"""
from __future__ import annotations

import math
from collections import deque


class ContinualMetrics:
    def __init__(self, n_tasks: int, windows: tuple[int, ...] = (10, 100)):
        self.n_tasks, self.windows = n_tasks, tuple(int(w) for w in windows)
        self.min_acc = [math.inf] * n_tasks
        self.end_acc = [math.nan] * n_tasks  # A_k(t_k)
        # previous w-1 accuracies of each task, per window size: a pair inside a window of w
        # evaluations is (one of the previous w-1, the newest).
        self.recent = {w: [deque(maxlen=max(w - 1, 1)) for _ in range(n_tasks)] for w in self.windows}
        self.wf = {w: [0.0] * n_tasks for w in self.windows}
        self.wp = {w: [0.0] * n_tasks for w in self.windows}

    def update(self, accs: list[float], current: int, task_end: bool = False) -> dict[str, float]:
        """`accs[k]` is the accuracy on task k+1 for the seen tasks; `current` is the 1-based task
        being learned. Returns the running metrics for this evaluation."""
        j = current
        for k, a in enumerate(accs):
            if k + 1 < j:
                self.min_acc[k] = min(self.min_acc[k], a)
            for w in self.windows:
                prev = self.recent[w][k]
                if prev and w > 1:
                    self.wf[w][k] = max(self.wf[w][k], max(prev) - a)
                    self.wp[w][k] = max(self.wp[w][k], a - min(prev))
                prev.append(a)
        out: dict[str, float] = {}
        olds = [self.min_acc[k] for k in range(j - 1)]
        min_acc = sum(olds) / len(olds) if olds else math.nan
        out["min_acc"] = min_acc
        out["wc_acc"] = accs[j - 1] if j == 1 else accs[j - 1] / j + (1 - 1 / j) * min_acc
        seen = len(accs)
        for w in self.windows:
            out[f"wf{w}"] = sum(self.wf[w][:seen]) / seen
            out[f"wp{w}"] = sum(self.wp[w][:seen]) / seen
        if task_end:
            self.end_acc[j - 1] = accs[j - 1]
            out["acc"] = sum(accs) / seen
            out["forg"] = (sum(self.end_acc[k] - accs[k] for k in range(j - 1)) / (j - 1)) if j > 1 else math.nan
        return out

    def state_dict(self) -> dict:
        return {"min_acc": list(self.min_acc), "end_acc": list(self.end_acc),
                "recent": {w: [list(d) for d in ds] for w, ds in self.recent.items()},
                "wf": {w: list(v) for w, v in self.wf.items()}, "wp": {w: list(v) for w, v in self.wp.items()}}

    def load_state_dict(self, sd: dict) -> None:
        self.min_acc, self.end_acc = list(sd["min_acc"]), list(sd["end_acc"])
        for w in self.windows:
            self.recent[w] = [deque(d, maxlen=max(w - 1, 1)) for d in sd["recent"][w]]
            self.wf[w], self.wp[w] = list(sd["wf"][w]), list(sd["wp"][w])


def from_history(accs: list[list[float]], current: list[int], task_end: list[bool],
                 n_tasks: int | None = None, windows: tuple[int, ...] = (10, 100)) -> list[dict[str, float]]:
    """Replay a sequence of evaluations (each a list of seen-task accuracies) through the tracker."""
    n = n_tasks or max(len(a) for a in accs)
    tracker = ContinualMetrics(n, windows)
    return [tracker.update(a, c, e) for a, c, e in zip(accs, current, task_end)]
