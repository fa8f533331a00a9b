"""Cost of the radius hook per step relative to one forward+backward on the same batch (target <= 1x).

The hook does a parameter snapshot (`before_step`), the update difference, its norm, and one batched
forward-mode pass of the logits over the probe set; here the probe set is the mini-batch itself
(`probe=batch`), as in the issue's target. Beside each hook row, for the profile: the forward-mode
pass alone (`logit_jvp`, dual tensors), the same product through `torch.func.jvp(functional_call)`
(what the hook used before), and a plain forward (no graph): the floor any exact JVP pays at least once
for the primal. A last row times the ghosts_softmax spike setting (probe = the whole digits train
split, 1257 samples) against a forward+backward on a batch of 64, for information.

Each side of a round runs `calls` times back to back (single calls of ~0.5 ms are at the mercy of the
scheduler); the ratio is the median of the per-round ratios.
"""
from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F
from torch.func import functional_call, jvp

from runner.bench import paired_ratio, record, round_robin, set_threads
from runner.data import load
from runner.hooks.base import eval_mode
from runner.hooks.radius import Radius
from runner.metrics.radius import logit_jvp
from runner.models.cnn import CNN
from runner.models.mlp import MLP
from runner.models.transformer import TinyTransformer
from runner.seeding import STREAMS, generator
from runner.trainers.base import TrainState


def _sides(model: torch.nn.Module, batch: int, probe: str, calls: int) -> dict:
    data = load("digits")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    state = TrainState(model=model, optimizer=opt, scheduler=None, data=data, device=torch.device("cpu"), seed=0,
                       generators={s: generator(0, s) for s in STREAMS})
    x, y = data.x_train[:batch], data.y_train[:batch]
    state.extras["batch"] = (x, y)
    hook = Radius(probe=probe)
    hook.setup(state)
    noise = [1e-3 * torch.randn_like(p) for p in model.parameters()]
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    step = dict(zip(params, noise))
    buffers = dict(model.named_buffers())

    def with_hook():
        hook.before_step(state)
        with torch.no_grad():  # stands in for the optimizer's update (cheap, in place)
            torch._foreach_add_(list(model.parameters()), noise)
        hook(state)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    def forward_mode():
        logit_jvp(model, params, step, x)

    def func_jvp():
        with eval_mode(model):
            jvp(lambda p: functional_call(model, (p, buffers), (x,)), (params,), (step,))

    def forward():
        with eval_mode(model):
            model(x)

    def repeat(fn):
        def many():
            for _ in range(calls):
                fn()
        return lambda: many

    return {k: repeat(f) for k, f in (("hook", with_hook), ("forward_backward", forward_backward),
                                      ("forward_mode", forward_mode), ("func_jvp", func_jvp), ("forward", forward))}


def run(quick: bool = False) -> None:
    set_threads()
    torch.manual_seed(0)
    repeats = 3 if quick else 15
    cases = [("mlp", MLP((1, 8, 8), 10, hidden=[128]), 64, "batch", 100),
             ("cnn", CNN((1, 8, 8), 10), 128, "batch", 10),
             ("transformer", TinyTransformer((1, 8, 8), 10), 128, "batch", 10),
             ("mlp_train_split", MLP((1, 8, 8), 10, hidden=[128]), 64, "train", 50)]
    for case, model, batch, probe, calls in cases:
        sides = _sides(model, batch, probe, calls)
        if probe != "batch":  # the information row: hook vs forward+backward only
            sides = {k: sides[k] for k in ("hook", "forward_backward")}
        t = round_robin(sides, repeats=repeats, warmup=1)
        fb = t["forward_backward"]
        raw = {"seconds": t, "calls_per_repeat": calls, "batch": batch, "probe": probe}

        def row(what: str, side: str, target: str = "") -> None:
            r = record(f"radius/{case} b{batch}: {what} vs one forward+backward", statistics.median(t[side]) / calls * 1e3,
                       statistics.median(fb) / calls * 1e3, "ms/call", target, raw=raw, ratio=paired_ratio(t[side], fb))
            print(f"{r['name']}: {r['ours']} vs {r['reference']} ms, ratio {r['ratio']}")

        if probe != "batch":
            row("hook, probe = the whole train split (1257 samples)", "hook")
            continue
        row("radius hook (snapshot, difference, norm, forward-mode pass)", "hook", "<=1")
        row("forward-mode pass alone (dual tensors)", "forward_mode")
        row("torch.func.jvp(functional_call) (the hook before issue 23)", "func_jvp")
        row("plain forward, no graph (the primal every exact JVP computes)", "forward")


if __name__ == "__main__":
    run()
