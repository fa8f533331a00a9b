"""Checkpoints: everything a resume needs, written atomically, read back with clear errors.

A checkpoint holds the model, optimizer and scheduler states, every RNG (the run's per-purpose
generators and the global torch/CUDA/numpy/python ones, which e.g. dropout draws from), the
trainer's state (data order, replay memory), every hook's state, the engine's position (phase,
step within it, elapsed time) and how many rows of metrics.csv belong to it. Resuming from it gives
the same metrics.csv as an uninterrupted run (apart from the wall-clock `time_s`).

Saved after a flush, so metrics.csv on disk holds exactly the rows up to the checkpoint's step.
Signals (SIGTERM from a scheduler, SIGUSR1 from SLURM/submitit before a time limit) set a flag;
the engine checkpoints at the next step boundary and then hands the signal on.

Loading is safe: `torch.load(weights_only=True)` admits tensors, plain containers and numbers, and
the numpy arrays, dtypes and scalars that RNG states and hook statistics hold (`SAFE_GLOBALS`,
none of which can run code). A results tree copied from a cluster or a colleague may hold a crafted
checkpoint: anything else in it is refused with one line naming the file, before anything runs.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch

from runner.errors import OptrunError

FORMAT = 1
SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)


def _safe_globals() -> list:
    core = np._core if hasattr(np, "_core") else np.core
    dtypes = (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32,
              np.uint64, np.bool_)
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype,
            *{type(np.dtype(t)) for t in dtypes}]


SAFE_GLOBALS = _safe_globals()


def config_hash(config_text: str) -> str:
    return hashlib.sha256(config_text.encode()).hexdigest()[:16]


def rng_states() -> dict:
    out = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


class Checkpointer:
    """Decides when to checkpoint and writes/reads `checkpoint.pt` in the run directory."""

    def __init__(self, path: str | Path, config_text: str, every_steps: int | None = None,
                 every_minutes: float | None = None, on_signal: bool = True):
        if every_steps is not None and every_steps <= 0:
            raise OptrunError(f"checkpoint.every_steps: expected a positive integer or null, got {every_steps}")
        if every_minutes is not None and every_minutes <= 0:
            raise OptrunError(f"checkpoint.every_minutes: expected a positive number or null, got {every_minutes}")
        self.path = Path(path)
        self.config_hash = config_hash(config_text)
        self.every_steps, self.every_minutes, self.on_signal = every_steps, every_minutes, on_signal
        self.last_time = time.monotonic()
        self.signal_received: int | None = None
        self._previous: dict[int, object] = {}

    # -- when ---------------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        if self.signal_received is not None:
            return True
        if self.every_steps and step % self.every_steps == 0:
            return True
        return bool(self.every_minutes) and time.monotonic() - self.last_time >= 60.0 * self.every_minutes

    def install_signal_handlers(self) -> None:
        if not self.on_signal:
            return
        try:
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not in the main thread: signals cannot be caught here
            self._previous.clear()

    def restore_signal_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        self.signal_received = signum

    def hand_on_signal(self) -> None:
        """After checkpointing on a signal: let the previous handler act (submitit requeues on
        SIGUSR1), or exit with 128 + signum as the default action would."""
        signum = self.signal_received
        previous = self._previous.get(signum)
        self.restore_signal_handlers()
        if callable(previous):
            previous(signum, None)
        raise SystemExit(128 + signum)

    # -- what --------------------------------------------------------------------------------
    def save(self, payload: dict) -> None:
        payload = {"format": FORMAT, "config_hash": self.config_hash, "rng": rng_states(), **payload}
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.last_time = time.monotonic()

    def load(self) -> dict:
        hint = "rerun with restart=true to start this run from scratch"
        try:
            with torch.serialization.safe_globals(SAFE_GLOBALS):
                payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            found = next((line.split("global", 1)[1].strip(" :.") for line in str(e).splitlines()
                          if "nsupported global" in line), None)
            if found is None:
                raise OptrunError(f"corrupt checkpoint {self.path} ({type(e).__name__}); {hint}") from None
            what = f" ({found.split()[0]})" if found else ""
            raise OptrunError(f"refusing to load checkpoint {self.path}: it holds an object that is not a tensor or "
                              f"plain data{what}, and loading it could run code; {hint}") from None
        except Exception as e:
            raise OptrunError(f"corrupt checkpoint {self.path} ({type(e).__name__}); {hint}") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise OptrunError(f"incompatible checkpoint {self.path} (unknown format); {hint}")
        if payload.get("config_hash") != self.config_hash:
            raise OptrunError(f"incompatible checkpoint {self.path}: it was written with a different config.yaml; {hint}")
        return payload


def move_to(obj, device):
    """Move tensors nested in dicts/lists/tuples to `device` (checkpoints are loaded on the CPU)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(v, device) for v in obj)
    return obj
