"""THE training loop. A trainer defines a step; hooks measure on a schedule; the engine owns time,
logging, divergence and the progress bar. There is no second loop anywhere in optrun.

Per step: hooks due at this step get `before_step(state)` (e.g. to snapshot the parameters), the
trainer's `step(state)` returns metrics (it must include `loss`, which the divergence check reads),
then the due controllers act on the update, the due read-only hooks measure, and one row is logged
(hook metrics as `<hook>/<name>`; see `runner.hooks.base`). A trainer (or a controller hook) may set
`state.stop = True` to end the run early as completed (e.g. a solver that converged); the hooks
scheduled at the end of the run (or of a phase) then run after that step, as they would at the end.

Hot-path habits: trainer metrics stay tensors (or `Deferred` values such as the accuracy) until a
flush, which resolves them in one batched transfer per `flush_every` steps; on an accelerator
divergence is tracked on the device and checked at flushes (on the CPU a check costs nothing, so it
happens every step); rows are written in chunks. `precision=bf16` runs trainer steps under
bfloat16 autocast (hooks keep full precision).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from runner.errors import OptrunError
from runner.hooks.base import Hook
from runner.results import MetricsWriter
from runner.trainers.base import TrainState


@dataclass
class Outcome:
    status: str  # completed | diverged
    step: int
    diverged_at: int | None = None
    wall_s: float = 0.0


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a `precision` setting (None: full precision)."""
    if precision not in PRECISIONS:
        raise OptrunError(f"precision: unknown '{precision}' (expected one of: {', '.join(PRECISIONS)})")
    return PRECISIONS[precision]


class Engine:
    def __init__(self, trainer, hooks: list, writer: MetricsWriter, log_every: int = 1, flush_every: int = 100,
                 progress: bool = True, desc: str = "optrun", checkpointer=None, on_flush=None,
                 precision: str = "fp32"):
        # controllers first: read-only hooks always measure what the controllers left (stable sort)
        self.trainer, self.hooks, self.writer = trainer, sorted(hooks, key=lambda h: not h.controller), writer
        self.log_every, self.flush_every = max(int(log_every), 1), max(int(flush_every), 1)
        self.progress, self.desc = progress, desc
        self.checkpointer, self.on_flush = checkpointer, on_flush
        self.autocast_dtype = autocast_dtype(precision)  # trainer steps only: hooks measure in full precision

    def _step(self, state: TrainState) -> dict:
        if self.autocast_dtype is None:
            return self.trainer.step(state)
        with torch.autocast(state.device.type, dtype=self.autocast_dtype):
            return self.trainer.step(state)

    def _row(self, state: TrainState, t0: float, metrics: dict, probes: dict | None = None) -> dict:
        return {"step": state.step, "task": state.task, "time_s": round(time.perf_counter() - t0, 6), **metrics,
                **(probes or {})}

    def _run_hooks(self, state: TrainState, **event) -> dict:
        return self._call(state, [h for h in self.hooks if h.due(state.step, **event)], {})

    @staticmethod
    def _call(state: TrainState, due: list, row: dict) -> dict:
        """Call the due hooks (controllers come first in `self.hooks`); their metrics, namespaced."""
        out = {}
        for h in due:
            for k, v in h.publish(h(state)).items():
                if k in row or k in out:
                    raise OptrunError(f"hooks.{h.name}: metric '{k}' is also written by another writer "
                                      "(rename it, or drop it from global_metrics)")
                out[k] = v
        return out

    def _setup(self, state: TrainState) -> None:
        """Hooks' setup, the objective check, and the declared columns (two writers of one name fail here)."""
        state.trainer = self.trainer
        if hasattr(self.trainer, "bind"):
            self.trainer.bind(state)
        objective = callable(getattr(self.trainer, "objective", None))
        owners: dict[str, str] = {}
        columns = getattr(self.trainer, "columns", None)
        for c in (columns(state) if columns else []):
            owners[c] = "the trainer"
        for h in self.hooks:
            if h.needs_objective and not objective:
                raise OptrunError(f"hooks={h.name} needs a differentiable objective, and trainer "
                                  f"{type(self.trainer).__name__} has none (objective(params, batch))")
            if type(h).columns is Hook.columns:
                raise OptrunError(f"hooks.{h.name}: {type(h).__name__} must declare the metrics it logs in "
                                  "columns(state) (metrics.csv has a fixed header)")
            h.setup(state)
            for c in map(h.column, h.columns(state)):
                if c in owners:
                    raise OptrunError(f"hooks.{h.name}: metric '{c}' is also written by {owners[c]}")
                owners[c] = f"hooks.{h.name}"
        self.writer.declare(owners)

    def _flush(self, bar) -> int | None:
        """Write pending rows; return the step of the first non-finite loss among them, if any."""
        rows = self.writer.resolve_pending()
        bad = next((i for i, r in enumerate(rows) if "loss" in r and not math.isfinite(r["loss"])), None)
        if bad is not None:
            del rows[bad + 1:]
        step = rows[bad]["step"] if bad is not None else None
        last = next((r for r in reversed(rows) if "loss" in r), None)
        self.writer.flush()
        if self.on_flush is not None:
            self.on_flush()
        if bar is not None and last is not None:
            bar.set_postfix({k.split("/")[-1]: f"{last[k]:.4g}" for k in ("loss", "train_acc", "continual_eval/acc_task1")
                             if k in last}, refresh=False)
        return step

    def run(self, state: TrainState, resume: dict | None = None) -> Outcome:
        """Train through every phase; with `resume` (a checkpoint payload), continue where it stopped."""
        t0 = time.perf_counter()
        phases = self.trainer.phases(state)
        state.total_steps = sum(p.steps for p in phases)
        state.task = phases[0].task if phases else None
        self._setup(state)
        start_phase = start_step = 0
        if resume is not None:
            start_phase, start_step = resume["engine"]["phase_index"], resume["engine"]["phase_step"]
            t0 -= resume["engine"]["elapsed"]
            self.writer.restore(resume["engine"]["writer"])
        else:
            start = self._run_hooks(state, start=True)
            if start:
                self.writer.add(self._row(state, t0, start))
        bar = tqdm(total=state.total_steps, desc=self.desc, disable=not self.progress, mininterval=0.5,
                   dynamic_ncols=True, leave=False)
        # Non-finite losses are accumulated on the device and checked at flushes (no sync per step);
        # on the CPU a check costs nothing, so it happens every step and hooks never see NaN weights.
        nonfinite = torch.zeros((), dtype=torch.bool, device=state.device)
        check_each_step = state.device.type == "cpu"
        ckpt = self.checkpointer
        if ckpt is not None:
            ckpt.install_signal_handlers()
        try:
            for pi, phase in enumerate(phases):
                if pi < start_phase:
                    continue
                state.phase_index, state.task = pi, phase.task
                self.trainer.begin_phase(state, phase)
                for h in self.hooks:
                    h.begin_phase(state)
                first = 0
                if resume is not None:
                    self._restore(state, resume)
                    first, resume = start_step, None
                    bar.update(state.step)
                for i in range(first, phase.steps):
                    last_of_phase = i == phase.steps - 1
                    due = ()
                    if self.hooks:
                        event = {"phase_end": last_of_phase, "end": last_of_phase and pi == len(phases) - 1}
                        due = [h for h in self.hooks if h.due(state.step + 1, **event)]
                    for h in due:
                        h.before_step(state)
                    metrics = self._step(state)
                    state.step += 1
                    if not check_each_step:
                        nonfinite |= ~torch.isfinite(torch.as_tensor(metrics["loss"]))
                    else:  # the loss as a number now: the row then holds no tensor for it
                        metrics["loss"] = float(metrics["loss"])
                        if not math.isfinite(metrics["loss"]):
                            self.writer.add(self._row(state, t0, metrics))
                            return self._diverged(state, bar, t0)
                    state.phase_end = last_of_phase or state.stop
                    if state.stop and self.hooks and not (last_of_phase and pi == len(phases) - 1):
                        # an early stop (a solver converged) ends the run here: the end-of-run probes
                        # measure now, after this step (before_step only ran for the hooks due anyway)
                        due = [h for h in self.hooks if h in due or h.due(state.step, phase_end=True, end=True)]
                    probes = self._call(state, due, metrics) if due else {}
                    state.phase_end = False
                    if probes or state.step % self.log_every == 0 or last_of_phase or state.stop:
                        self.writer.add(self._row(state, t0, metrics, probes))
                    bar.update(1)
                    checkpoint_now = ckpt is not None and not state.stop and ckpt.due(state.step)
                    if state.step % self.flush_every == 0 or last_of_phase or state.stop or checkpoint_now:
                        if bool(nonfinite):
                            return self._diverged(state, bar, t0)
                        self._flush(bar)
                    if checkpoint_now:
                        ckpt.save(self._snapshot(state, pi, i + 1, time.perf_counter() - t0))
                        if ckpt.signal_received is not None:
                            bar.close()
                            ckpt.hand_on_signal()
                    if state.stop:
                        break
                if state.stop:
                    break
            self._flush(bar)
            return Outcome("completed", state.step, wall_s=time.perf_counter() - t0)
        finally:
            bar.close()
            if ckpt is not None:
                ckpt.restore_signal_handlers()

    def _components(self, state: TrainState) -> dict:
        """Everything with a state_dict whose state a resume must restore: every named module,
        optimizer and scheduler, the trainer and each hook."""
        parts = {f"{kind}:{name}": part for kind, coll in (("module", state.modules), ("optimizer", state.optimizers),
                                                          ("scheduler", state.schedulers)) for name, part in coll.items()}
        parts["trainer"] = self.trainer
        parts.update({f"hook:{h.name}": h for h in self.hooks})
        return {k: v for k, v in parts.items() if v is not None and hasattr(v, "state_dict")}

    def _snapshot(self, state: TrainState, phase_index: int, phase_step: int, elapsed: float) -> dict:
        return {"engine": {"phase_index": phase_index, "phase_step": phase_step, "step": state.step,
                           "task": state.task, "elapsed": elapsed, "writer": self.writer.state()},
                "state": {k: v.state_dict() for k, v in self._components(state).items()},
                "generators": {k: g.get_state() for k, g in state.generators.items()}}

    def _restore(self, state: TrainState, payload: dict) -> None:
        from runner.checkpoint import move_to, set_rng_states

        for k, part in self._components(state).items():
            sd = payload["state"][k]
            part.load_state_dict(sd if k.split(":")[0] in ("module", "optimizer", "scheduler") else move_to(sd, state.device))
        for k, g in state.generators.items():
            if k in payload["generators"]:  # a stream first used after the checkpoint starts fresh, as it did
                g.set_state(payload["generators"][k])
        set_rng_states(payload["rng"])
        state.step, state.task = payload["engine"]["step"], payload["engine"]["task"]

    def _diverged(self, state: TrainState, bar, t0: float) -> Outcome:
        at = self._flush(bar)
        return Outcome("diverged", state.step, diverged_at=at if at is not None else state.step,
                       wall_s=time.perf_counter() - t0)
