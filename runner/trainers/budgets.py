"""Supervised training along a multi-budget learning-rate plan (`schedule=wsd|wsd_s|cyclic_cosine`).

The phases are the schedule's segments (stable stretches of the main branch, decays, cosine
cycles). A WSD decay *branch* is forked from the main branch: at its start the trainer snapshots
the model, optimizer, schedule and batch sampler; the branch runs (hooks due at its end measure the
decayed checkpoint) and the next phase restores the snapshot, so the main branch goes on exactly as
if the branch had never run. The engine's `step` counts every update, discarded ones included
(compute consumed); `path_step` is the position along the path the current weights went through.

Logged per step: loss, lr (used by this step), phase (stable | decay | branch | cosine), path_step;
`fork` = B_k on the last step before the decay to budget B_k, and `budget` = B_k on the step that
reaches the checkpoint for B_k.
"""
from __future__ import annotations

import copy

from runner.errors import OptrunError
from runner.trainers.base import Phase, TrainState
from runner.trainers.supervised import SupervisedTrainer


class BudgetTrainer(SupervisedTrainer):
    def __init__(self, batch_size: int | None = 64, loss: str = "ce", clip_grad_norm: float | None = None):
        super().__init__(steps=1, batch_size=batch_size, loss=loss, clip_grad_norm=clip_grad_norm)
        self.segments, self.snapshot, self.seg = [], None, None

    def phases(self, state: TrainState) -> list[Phase]:
        if not hasattr(state.scheduler, "segments"):
            raise OptrunError("trainer=budgets needs a multi-budget schedule (schedule=wsd, wsd_s or cyclic_cosine)")
        super().phases(state)  # builds the batch sampler
        self.segments = state.scheduler.segments
        return [Phase(steps=s.steps, name=s.kind) for s in self.segments]

    def begin_phase(self, state: TrainState, phase: Phase) -> None:
        if self.snapshot is not None:  # the previous phase was a branch: rewind to its fork point
            self._restore(state, self.snapshot)
            self.snapshot = None
        self.seg = self.segments[state.phase_index]
        if self.seg.rewind:
            self.snapshot = self._capture(state)
        state.scheduler.enter(state.phase_index)
        # on resume the engine begins the phase before it restores the checkpoint (state.step is still 0)
        if state.step and state.scheduler.last_epoch != self.seg.start:
            raise RuntimeError(f"budget plan out of sync: at path step {state.scheduler.last_epoch}, "
                               f"segment starts at {self.seg.start}")
        self.j = 0

    def _capture(self, state: TrainState) -> dict:
        return copy.deepcopy({"model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                              "scheduler": state.scheduler.state_dict(), "sampler": self._position()})

    def _position(self) -> dict:
        """The batch source's place in its epoch, without its stream: a branch continues the stream."""
        return {k: v for k, v in self.sampler.state_dict().items() if k != "generator"}

    def _restore(self, state: TrainState, snap: dict) -> None:
        state.model.load_state_dict(snap["model"])
        state.optimizer.load_state_dict(snap["optimizer"])
        state.scheduler.load_state_dict(snap["scheduler"])
        self.sampler.load_state_dict(snap["sampler"])

    def columns(self, state: TrainState) -> list[str]:
        return super().columns(state) + ["lr", "phase", "path_step", "fork", "budget"]

    def step(self, state: TrainState) -> dict:
        lr = state.lr
        metrics = super().step(state)
        self.j += 1
        seg, last = self.seg, self.j == self.seg.steps
        metrics.update(lr=lr, phase=seg.kind, path_step=seg.start + self.j)
        if last and seg.fork is not None:
            metrics["fork"] = seg.fork
        if last and seg.budget is not None:
            metrics["budget"] = seg.budget
        return metrics

    def state_dict(self) -> dict:
        return {**super().state_dict(), "snapshot": self.snapshot, "j": self.j}

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        self.snapshot, self.j = sd["snapshot"], sd["j"]
