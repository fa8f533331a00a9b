"""What a probe costs: each hook in conf/hooks/ timed per call (its `before_step` and `__call__`)
against one forward+backward of the model on one training batch, interleaved, mid-run.

Every hook config is discovered; a hook runs in the setting named for it in HOOK_RUNS, or else in a
short supervised run on digits. A hook that cannot be set up that way is reported in a note (add its
setting to HOOK_RUNS). The number of calls per repeat is calibrated from one timed call, so a cheap
per-step probe and an expensive end-of-run probe (pruning, step sweeps) both cost about
`BUDGET_S` per repeat. Comparisons of a hook against exact references or other libraries belong in
the hook's own benchmark file.
"""
from __future__ import annotations

import statistics
import time

import torch

from bench.common import compose, workdir
from runner.bench import note, record, round_robin, set_threads
from runner.config_check import CONF_DIR
from runner.data import ContinualData
from runner.dispatch import build
from runner.engine import Engine
from runner.results import MetricsWriter
from runner.trainers.supervised import loss_fn

# hook config name -> overrides of the run it is measured in (default: DEFAULT_RUN + hooks=[name]).
# End-of-run probes get a reduced setting (named in the row) so that one call takes seconds, not minutes.
HOOK_RUNS = {
    "continual_eval": ["experiment=stability_gap"],
    "population": ["experiment=wsd", "schedule.budgets=[100]", "hooks=[population]"],
    "iterate_average": ["trainer.steps=50", "model=mlp", "model.hidden=[16]", "hooks=[iterate_average]"],
    "prune": ["trainer.steps=50", "hooks=[prune]", "hooks.prune.rounds=1", "hooks.prune.sparsities=[0.8]",
              "hooks.prune.m=64"],
}
DEFAULT_RUN = ["trainer.steps=50"]
BUDGET_S = 0.25  # target wall time of the hook side per repeat
MAX_CALLS = 1000


def _batch(state, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = state.data.tasks[(state.task or 1) - 1] if isinstance(state.data, ContinualData) else state.data
    return data.x_train[:batch_size], data.y_train[:batch_size]


def calls_for(seconds_per_call: float, budget: float = BUDGET_S, most: int = MAX_CALLS) -> int:
    """Calls per repeat so that a repeat takes about `budget` seconds (at least 1, at most `most`)."""
    return max(1, min(most, round(budget / max(seconds_per_call, 1e-9))))


def measure(hook_name: str, repeats: int, warmup: int, quick: bool = False) -> None:
    overrides = HOOK_RUNS.get(hook_name, [*DEFAULT_RUN, f"hooks=[{hook_name}]"])
    cfg = compose(*overrides, "device=cpu")
    state, trainer, hooks = build(cfg)
    keys = sorted(cfg.get("hooks") or {})  # build() instantiates the hooks in this order
    hook = hooks[keys.index(hook_name)] if hook_name in keys else hooks[0] if len(hooks) == 1 else None
    if hook is None:
        raise LookupError(f"the run {overrides} has no hook '{hook_name}'")
    Engine(trainer, [], MetricsWriter(workdir() / "metrics.csv"), progress=False).run(state)  # train, no probes
    hook.setup(state)
    batch_size = int(cfg.trainer.get("batch_size") or 64)
    x, y = _batch(state, batch_size)
    model = state.model
    kind = "ce" if y.dtype == torch.long else "mse"

    resolve = getattr(hook, "resolve", None)  # a hook whose values wait for the flush: its resolution is timed too

    def probe(n):
        for _ in range(n):
            hook.before_step(state)
            hook(state)
        if resolve is not None:
            resolve()

    def forward_backward(n):
        for _ in range(n):
            loss = loss_fn(kind, model(x), y)
            model.zero_grad(set_to_none=True)
            loss.backward()

    t = time.perf_counter()
    probe(1)  # also the warm-up of lazily built state
    one_call = time.perf_counter() - t
    n_calls = calls_for(one_call, BUDGET_S / (4 if quick else 1))
    n_fb = 200  # forward+backward on one batch: well under a millisecond, so always 200 calls
    if one_call > 5:  # end-of-run probes that take seconds or more: fewer repeats
        repeats, warmup = min(repeats, 2), 0
    times = round_robin({"hook": lambda: lambda: probe(n_calls), "forward_backward": lambda: lambda: forward_backward(n_fb)},
                        repeats=repeats, warmup=warmup)
    setting = "" if hook_name not in HOOK_RUNS else f" [{' '.join(overrides)}]"
    record(f"hooks/{hook_name}: cost per call vs one forward+backward (batch {len(y)}){setting}",
           statistics.median(times["hook"]) / n_calls, statistics.median(times["forward_backward"]) / n_fb, "s/call",
           "", raw={"seconds": times, "calls_per_repeat": {"hook": n_calls, "forward_backward": n_fb},
                    "run": overrides})


def run(quick: bool = False) -> None:
    set_threads()
    for path in sorted((CONF_DIR / "hooks").glob("*.yaml")):
        try:
            measure(path.stem, repeats=2 if quick else 4, warmup=1, quick=quick)
        except Exception as e:  # one hook without a setting must not hide the others
            reason = (str(e).strip().splitlines() or [""])[0]
            note(f"hooks/{path.stem}: not measured ({type(e).__name__}: {reason}); "
                 "give it a run setting in HOOK_RUNS (bench/bench_hooks.py)")


if __name__ == "__main__":
    run()
