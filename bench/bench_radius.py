"""Cost of the radius hook per step relative to one forward+backward on the same batch (target <= 1x).

The hook does a parameter snapshot, the update difference, and one batched jvp of the logits over the
probe set; here the probe set is the mini-batch itself (`probe=batch`), as in the issue's target. A
third row times the ghosts_softmax spike setting (probe = the whole digits train split, 1257 samples)
against the same forward+backward on a batch of 64, for information.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.bench import interleaved, record
from runner.data import load
from runner.hooks.radius import Radius
from runner.models.cnn import CNN
from runner.models.mlp import MLP
from runner.models.transformer import TinyTransformer
from runner.seeding import STREAMS, generator
from runner.trainers.base import TrainState


def _setup(model: torch.nn.Module, batch: int, probe: str):
    data = load("digits")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    state = TrainState(model=model, optimizer=opt, scheduler=None, data=data, device=torch.device("cpu"), seed=0,
                       generators={s: generator(0, s) for s in STREAMS})
    x, y = data.x_train[:batch], data.y_train[:batch]
    state.extras["batch"] = (x, y)
    hook = Radius(probe=probe)
    hook.setup(state)
    noise = [1e-3 * torch.randn_like(p) for p in model.parameters()]

    def with_hook():
        hook.before_step(state)
        with torch.no_grad():  # stands in for the optimizer's update (cheap, in place)
            for p, n in zip(model.parameters(), noise):
                p.add_(n)
        hook(state)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    return with_hook, forward_backward


def run(quick: bool = False) -> None:
    torch.manual_seed(0)
    repeats = 5 if quick else 30
    cases = [("radius_hook_vs_fwd_bwd_mlp_b64", MLP((1, 8, 8), 10, hidden=[128]), 64, "batch", "<=1"),
             ("radius_hook_vs_fwd_bwd_cnn_b128", CNN((1, 8, 8), 10), 128, "batch", "<=1"),
             ("radius_hook_vs_fwd_bwd_transformer_b128", TinyTransformer((1, 8, 8), 10), 128, "batch", "<=1"),
             ("radius_hook_train_split_vs_fwd_bwd_mlp_b64", MLP((1, 8, 8), 10, hidden=[128]), 64, "train", "")]
    for name, model, batch, probe, target in cases:
        a, b = _setup(model, batch, probe)
        ours, ref, _, _ = interleaved(a, b, repeats=repeats, warmup=2)
        row = record(name, ours * 1e3, ref * 1e3, "ms/step", target)
        print(f"{name}: hook {row['ours']} ms, forward+backward {row['reference']} ms, ratio {row['ratio']}")


if __name__ == "__main__":
    run()
