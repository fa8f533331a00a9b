"""What a probe costs: each hook in conf/hooks/ timed per call (its `before_step` and `__call__`)
against one forward+backward of the model on one training batch, interleaved, mid-run.

Every hook config is discovered; a hook runs in the setting named for it in HOOK_RUNS, or else in a
short supervised run on digits. A hook that cannot be set up that way is reported in a note (add its
setting to HOOK_RUNS). Comparisons of a hook against exact references or other libraries belong in
the hook's own benchmark file.
"""
from __future__ import annotations

import statistics

import torch

from bench.common import compose, workdir
from runner.bench import note, record, round_robin, set_threads
from runner.config_check import CONF_DIR
from runner.data import ContinualData
from runner.dispatch import build
from runner.engine import Engine
from runner.results import MetricsWriter
from runner.trainers.supervised import loss_fn

# hook config name -> overrides of the run it is measured in (default: DEFAULT_RUN + hooks=[name])
HOOK_RUNS = {"continual_eval": ["experiment=stability_gap"]}
DEFAULT_RUN = ["trainer.steps=50"]


def _batch(state, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = state.data.tasks[(state.task or 1) - 1] if isinstance(state.data, ContinualData) else state.data
    return data.x_train[:batch_size], data.y_train[:batch_size]


def measure(hook_name: str, n_calls: int, repeats: int, warmup: int) -> None:
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

    def probe():
        for _ in range(n_calls):
            hook.before_step(state)
            hook(state)

    def forward_backward():
        for _ in range(n_calls):
            loss = loss_fn(kind, model(x), y)
            model.zero_grad(set_to_none=True)
            loss.backward()

    t = round_robin({"hook": lambda: probe, "forward_backward": lambda: forward_backward}, repeats=repeats,
                    warmup=warmup)
    record(f"hooks/{hook_name}: cost per call vs one forward+backward (batch {len(y)})",
           statistics.median(t["hook"]) / n_calls, statistics.median(t["forward_backward"]) / n_calls, "s/call", "",
           raw={"seconds": t, "calls_per_repeat": n_calls, "run": overrides})


def run(quick: bool = False) -> None:
    set_threads()
    for path in sorted((CONF_DIR / "hooks").glob("*.yaml")):
        try:
            measure(path.stem, n_calls=10 if quick else 50, repeats=2 if quick else 5, warmup=1)
        except Exception as e:  # one hook without a setting must not hide the others
            reason = (str(e).strip().splitlines() or [""])[0]
            note(f"hooks/{path.stem}: not measured ({type(e).__name__}: {reason}); "
                 "give it a run setting in HOOK_RUNS (bench/bench_hooks.py)")


if __name__ == "__main__":
    run()
