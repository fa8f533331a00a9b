"""What the benchmarks share: composing optrun configs, timing optrun's real engine, and the
hand-written loops it is measured against (a bare loop over tensors in memory, the floor; and the
usual `DataLoader(TensorDataset)` loop, in its fastest form for in-memory data, num_workers=0, and
with num_workers=2 as PyTorch's CIFAR-10 tutorial writes it).

Every side of a loop comparison gets the same model, optimizer and data from `runner.dispatch.build`,
so the only difference measured is the loop itself.
"""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.data import DataLoader, TensorDataset

from runner import experiments
from runner.bench import paired_ratio, record, round_robin
from runner.dispatch import build
from runner.engine import Engine
from runner.results import MetricsWriter

# (name, overrides): an MLP on MNIST-1D and a small CNN on digits, optrun's default sizes
LOOP_CASES = [("mlp_mnist1d", ["dataset=mnist1d", "model=mlp"]),
              ("cnn_digits", ["dataset=digits", "model=cnn"])]


def compose(*overrides: str) -> DictConfig:
    """The config `optrun <overrides> progress=false` would run (experiment folders and scale files included)."""
    return experiments.compose(["progress=false", *overrides])


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="optrun-bench-"))


def run_optrun(cfg: DictConfig, out: Path):
    """One whole run as `optrun` does it minus Hydra: build, then the engine writing metrics.csv."""
    state, trainer, hooks = build(cfg)
    Engine(trainer, hooks, MetricsWriter(out / "metrics.csv"), log_every=cfg.log_every, flush_every=cfg.flush_every,
           progress=False).run(state)
    return state


def optrun_factory(cfg: DictConfig, out: Path, include_build: bool = False):
    """A `round_robin` factory for optrun's engine; the build is timed only if `include_build`."""
    def factory():
        if include_build:
            return lambda: run_optrun(cfg, out)
        state, trainer, hooks = build(cfg)
        engine = Engine(trainer, hooks, MetricsWriter(out / "metrics.csv"), log_every=cfg.log_every,
                        flush_every=cfg.flush_every, progress=False)
        return lambda: engine.run(state)
    return factory


def bare_loop(model, optimizer, x, y, steps: int, batch_size: int, generator: torch.Generator) -> None:
    """The floor: tensors in memory, a permutation per epoch, nothing else."""
    n = len(y)
    perm, pos = torch.randperm(n, generator=generator, device=x.device), 0
    model.train()
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=generator, device=x.device), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def dataloader_loop(model, optimizer, loader: DataLoader, steps: int, device) -> None:
    """The loop most training scripts use: a DataLoader over a TensorDataset, batches moved to the device."""
    model.train()
    done = 0
    while done < steps:
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break


def loop_sides(cfg: DictConfig, out: Path) -> dict:
    """round_robin factories for optrun's engine, the bare loop and the DataLoader loop on one config."""
    steps, batch = int(cfg.trainer.steps), int(cfg.trainer.batch_size)

    def bare():
        state, _, _ = build(cfg)
        d, g = state.data, torch.Generator(device=state.device).manual_seed(0)
        return lambda: bare_loop(state.model, state.optimizer, d.x_train, d.y_train, steps, batch, g)

    def dataloader(workers: int = 0):
        def factory():
            state, _, _ = build(cfg)
            d = state.data
            ds = TensorDataset(d.x_train.cpu(), d.y_train.cpu())
            loader = DataLoader(ds, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0),
                                pin_memory=state.device.type == "cuda", num_workers=workers)
            return lambda: dataloader_loop(state.model, state.optimizer, loader, steps, state.device)
        return factory

    return {"optrun": optrun_factory(cfg, out), "bare": bare, "dataloader": dataloader(),
            "dataloader_2_workers": dataloader(2)}


def compare_loops(prefix: str, device: str, steps: int, repeats: int, warmup: int, batch_size: int = 64,
                  extra: list[str] = (), target: str = ">=0.95") -> None:
    """Record optrun vs bare and optrun vs DataLoader (steps/s) for every case in LOOP_CASES, and
    optrun logging every 100 steps instead of every step (no target: what the per-step row costs)."""
    out = workdir()
    for case, overrides in LOOP_CASES:
        run = [*overrides, f"device={device}", f"trainer.steps={steps}", f"trainer.batch_size={batch_size}", *extra]
        sides = loop_sides(compose(*run), out)
        sides["optrun_log_every_100"] = optrun_factory(compose(*run, "log_every=100"), out)
        times = round_robin(sides, repeats=repeats, warmup=warmup)
        per_round = {k: [steps / t for t in v] for k, v in times.items()}
        rate = {k: statistics.median(v) for k, v in per_round.items()}
        raw = {"steps": steps, "batch_size": batch_size, "device": device, "seconds": times}

        def row(what: str, ours: str, ref: str, target: str = "") -> None:
            record(f"{prefix}{case}: {what}", rate[ours], rate[ref], "steps/s", target, raw=raw,
                   ratio=paired_ratio(per_round[ours], per_round[ref]))

        row("optrun vs bare loop", "optrun", "bare", target)
        row("optrun vs DataLoader loop", "optrun", "dataloader")
        row("optrun vs DataLoader loop with num_workers=2 (as in PyTorch's CIFAR-10 tutorial)", "optrun",
            "dataloader_2_workers")
        row("bare loop vs DataLoader loop (the most any loop doing the same math can reach)", "bare", "dataloader")
        row("optrun with log_every=100 vs bare loop (cost of a row per step)", "optrun_log_every_100", "bare")
