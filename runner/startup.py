"""Start-up and exit time of an optrun process: what it pays besides `import torch`, and what optrun
does about it. This module imports no torch itself (`optrun --help` uses `fast_exit`).

`import torch` takes most of a run's start-up (1.0-1.5 s on 2 CPU cores); the rest should be small.
The largest extra cost was `torch._dynamo` (about 0.9 s, with sympy and torch.fx): torch.optim
imports it on the first optimizer call even when nothing is compiled. `Optimizer.add_param_group`
(called by the constructor), `zero_grad`, `state_dict` and `load_state_dict` are wrapped by
`torch._disable_dynamo`, whose wrapper imports `torch._dynamo` on its first call to build
`torch._dynamo.disable(fn)` and caches it as `fn.__dynamo_disable`; and the `step` of torch's own
optimizers (SGD, Adam, ...) is wrapped by `_use_grad_for_differentiable`, which imports
`torch._dynamo` on every call for two `torch._dynamo.graph_break()` calls.

`skip_dynamo_import(True)` avoids both, for a run that compiles nothing (`compile=false`):

- it caches each `_disable_dynamo`-wrapped function itself as its `__dynamo_disable`, so the wrapper
  calls it directly. `torch._dynamo.disable(fn)` only differs from `fn` while dynamo traces the
  calling frame, which never happens without `torch.compile`;
- it gives the built-in optimizers a `step` that does what `_use_grad_for_differentiable` does (grad
  mode set to `defaults["differentiable"]` during the step, then restored) without the two
  `graph_break()` calls: those are empty functions that only mark a graph break for dynamo's tracer,
  and nothing traces an eager step. An optimizer computes the same numbers (tests/test_startup.py).

`skip_dynamo_import(False)` (a `compile=true` run, or a later run of a sweep in the same process)
puts torch's own objects back, so torch then behaves exactly as without this module. The switch is
process-wide, like the class attributes it sets.

`fast_exit()`: a process that imported torch spends 0.3-0.4 s of its exit in the interpreter's last
garbage collections over torch's objects. `gc.freeze()` at exit (an atexit handler, so a process that
calls `main()` in-process, such as a test, is unaffected until it ends) leaves them out; atexit
handlers, `weakref.finalize` and the release of every object that is not in a reference cycle happen
as before (Python never promised `__del__` for objects still alive at exit).

`mark_first_step()` is for measuring (bench/bench_startup.py): with `$OPTRUN_FIRST_STEP_FILE` set, the
wall-clock time (`time.time()`) at the end of the process's first optimizer step is written there.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import os
import time

FIRST_STEP_ENV = "OPTRUN_FIRST_STEP_FILE"
_cached: list = []  # functions whose `__dynamo_disable` we set (to themselves)
_replaced: dict = {}  # (class, "step") -> the attribute it had before
_hooks: dict = {}  # what was registered once per process: "exit", "first_step"


def fast_exit() -> None:
    """Skip the interpreter's last garbage collections over long-lived objects at exit (once)."""
    if "exit" not in _hooks:
        _hooks["exit"] = atexit.register(gc.freeze)


def _wrapped(obj, code):
    """The function `obj` wraps if `obj` is a wrapper with the given code (seen through torch's
    `profile_hook_step`, which the optimizer constructor puts around each class's `step`)."""
    import inspect

    try:
        obj = inspect.unwrap(obj, stop=lambda f: getattr(f, "__code__", None) is code)
    except ValueError:  # a cycle of __wrapped__
        return None
    return obj.__wrapped__ if getattr(obj, "__code__", None) is code else None


def _eager_step(step):
    """`step` under the grad mode `_use_grad_for_differentiable` sets, minus dynamo's graph breaks."""
    import torch

    @functools.wraps(step)
    def eager_step(self, *args, **kwargs):
        before = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])
            return step(self, *args, **kwargs)
        finally:
            torch.set_grad_enabled(before)
    return eager_step


def skip_dynamo_import(skip: bool = True) -> None:
    """With `skip`, optimizers stop importing `torch._dynamo` (see the module docstring); without,
    torch's own behaviour is restored. Call it before the optimizer is built; only a run that
    compiles nothing may skip."""
    if not skip:
        for fn in _cached:
            if fn.__dict__.get("__dynamo_disable") is fn:
                del fn.__dict__["__dynamo_disable"]
        _cached.clear()
        for (cls, name), original in _replaced.items():
            setattr(cls, name, original)
        _replaced.clear()
        return
    if dynamo_skipped():
        return
    import torch
    from torch.optim.optimizer import Optimizer, _use_grad_for_differentiable

    disable_code = torch._disable_dynamo(lambda: None).__code__  # the code of `_disable_dynamo`'s wrapper
    use_grad_code = _use_grad_for_differentiable(lambda *a: None).__code__
    classes = [Optimizer]
    for cls in classes:  # Optimizer and every subclass defined so far (all of torch.optim's)
        classes.extend(cls.__subclasses__())
        for attr in list(vars(cls).values()):
            fn = _wrapped(attr, disable_code)
            if fn is not None and "__dynamo_disable" not in fn.__dict__:
                fn.__dict__["__dynamo_disable"] = fn
                _cached.append(fn)
        step = vars(cls).get("step")
        inner = _wrapped(step, use_grad_code)
        if inner is None:
            continue
        new = _eager_step(inner)
        if getattr(step, "hooked", False):  # keep the pre/post step hooks of optimizers built earlier
            new = Optimizer.profile_hook_step(new)
            new.hooked = True
        _replaced[(cls, "step")] = step
        cls.step = new


def dynamo_skipped() -> bool:
    """Whether `skip_dynamo_import(True)` is in effect."""
    return bool(_cached or _replaced)


def mark_first_step() -> None:
    """With $OPTRUN_FIRST_STEP_FILE set, write `time.time()` there once, after the first optimizer
    step of this process (a global optimizer step hook); otherwise do nothing."""
    path = os.environ.get(FIRST_STEP_ENV)
    if not path or "first_step" in _hooks:
        return
    from torch.optim.optimizer import register_optimizer_step_post_hook

    written = []

    def hook(optimizer, args, kwargs) -> None:
        if not written:  # (torch iterates over its hooks while calling them: no removal here)
            written.append(time.time())
            with open(path, "w") as f:
                f.write(f"{written[0]!r}\n")

    _hooks["first_step"] = register_optimizer_step_post_hook(hook)


@contextlib.contextmanager
def run_mode_known():
    """Inside: Hydra does not compose the whole config an extra time to learn the run mode.

    Before a run, Hydra's `_run_hydra` calls `Hydra.get_mode`, which composes the config just to read
    `hydra.mode` and then composes it again to run: 0.15-0.25 s per run on 2 cores, a sixth of a short
    pooled run of `optrun reproduce`. No optrun config sets `hydra.mode` (a test checks), so that call
    answers None, and Hydra then picks the mode from the command line (`-m` or not). Inside this
    context it answers None without composing; a caller that passes a `hydra.mode=` override gets
    Hydra's own call. Restored on exit."""
    from hydra._internal.hydra import Hydra

    original = Hydra.get_mode

    def get_mode(self, config_name, overrides):
        if any(o.lstrip("+~").startswith("hydra.mode=") for o in overrides):
            return original(self, config_name, overrides)
        return None

    Hydra.get_mode = get_mode
    try:
        yield
    finally:
        Hydra.get_mode = original


def validate_first_job_only() -> None:
    """Hydra's BasicSweeper composes every job's config once before launching the batch
    (`validate_batch_is_legal`, "to detect failures early"), and the launcher composes each again to run
    it: two compositions per run, ~0.4 s each on 2 cores, serial in the sweeping process even when the
    jobs run in parallel (72 runs of ghosts_softmax's smoke: ~30 s). optrun has already checked every
    override key and value of the sweep (`runner.config_check.check_overrides`), and the jobs of a
    batch differ only in swept values, so composing the first job of a batch keeps Hydra's early
    failure for a config that cannot compose at all. A later job that still cannot compose (a swept
    value check_overrides accepts but the composed config rejects) stops the sweep when the launcher
    reaches it, with Hydra's message; the runs before it are complete on disk. Idempotent; the sweeper
    class is patched process-wide."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.plugins.sweeper import Sweeper

    if getattr(BasicSweeper, "_optrun_first_job_only", False):
        return

    def validate(self, batch):
        return Sweeper.validate_batch_is_legal(self, list(batch)[:1])

    BasicSweeper.validate_batch_is_legal = validate
    BasicSweeper._optrun_first_job_only = True
