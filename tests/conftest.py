"""Shared fixtures: Hydra composition against the real conf/ tree, and small in-process runs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from runner.config_check import CONF_DIR

torch.set_num_threads(min(2, os.cpu_count() or 1))
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def make_cfg():
    """make_cfg(*overrides) -> a composed DictConfig (progress bar off)."""

    def _make(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base=None):
            cfg = compose("config", overrides=["progress=false", *overrides])
        GlobalHydra.instance().clear()
        return cfg

    return _make


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OPTRUN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
