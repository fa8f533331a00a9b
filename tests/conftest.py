"""Shared fixtures: Hydra composition against the real conf/ tree and experiment folders, small in-process runs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from runner import experiments

torch.set_num_threads(min(2, os.cpu_count() or 1))
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def make_cfg():
    """make_cfg(*overrides) -> a composed DictConfig (progress bar off)."""

    def _make(*overrides: str):
        return experiments.compose(["progress=false", *overrides])

    return _make


def _stand_in(node) -> None:
    from omegaconf import DictConfig

    if isinstance(node, DictConfig):
        for k in list(node.keys()):
            if k == "stand_in":
                node[k] = True
            else:
                _stand_in(node._get_node(k))


@pytest.fixture
def stand_in():
    """stand_in(cfg): set every `stand_in` key to true (in place): data sets and models read from files
    become random ones of their shapes, so a paper-scale config builds on the CPU without its files."""
    from omegaconf import OmegaConf

    def _apply(cfg):
        OmegaConf.set_struct(cfg, False)
        _stand_in(cfg)
        return cfg

    return _apply


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OPTRUN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def one_thread():
    """Tiny tensors (solver tests): one torch thread, as the solver experiments' `threads: 1`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def solver_state():
    """solver_state(seed) -> a model-free TrainState with every seed stream, as `dispatch.build` makes."""
    from runner import seeding
    from runner.trainers.base import TrainState

    def _make(seed: int = 0):
        return TrainState(model=None, optimizer=None, scheduler=None, data=None, device=torch.device("cpu"),
                          seed=seed, generators={s: seeding.generator(seed, s) for s in seeding.STREAMS})

    return _make
