"""Data made in code, cached on disk: generate once per (kind, parameters, seed), reuse in every run after.

PDE trajectories (spectral Burgers, Poisson systems with direct-solve labels) cost seconds to minutes to
make and are a pure function of their parameters and seed, so a sweep of ten arms should pay for them once.
`cached(kind, params, make)` keys the file by a hash of the kind, the parameters (JSON, sorted keys) and
`version` (bump it when the generator changes), writes it atomically (a temporary file then `os.replace`,
so concurrent SLURM jobs never read half a file) and returns the tensors with `info`: whether it was a hit,
the file, and the generation time in seconds (the data sources log it).

Where: `cache_dir`, else `$OPTRUN_CACHE`, else `~/.cache/optrun`; `OPTRUN_CACHE=off` disables caching
(tests of a generator use that or a temporary folder).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from runner.errors import OptrunError


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path | None:
    where = cache_dir if cache_dir is not None else os.environ.get("OPTRUN_CACHE", "~/.cache/optrun")
    return None if str(where).lower() in ("off", "none", "") else Path(where).expanduser()


def cache_key(kind: str, params: dict, version: int = 1) -> str:
    try:
        text = json.dumps({"kind": kind, "version": version, "params": params}, sort_keys=True)
    except TypeError as e:
        raise OptrunError(f"cached('{kind}'): parameters must be JSON-serialisable ({e})") from e
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def cached(kind: str, params: dict, make, version: int = 1, cache_dir=None) -> tuple[dict, dict]:
    """`make() -> dict[str, Tensor]`, computed once per key. Returns (tensors on the CPU, info)."""
    root = cache_root(cache_dir)
    path = None if root is None else root / "data" / f"{cache_key(kind, params, version)}.pt"
    if path is not None and path.exists():
        try:
            return torch.load(path, weights_only=True), {"hit": True, "path": str(path), "seconds": 0.0}
        except Exception:  # a corrupt or foreign file: regenerate over it
            pass
    start = time.perf_counter()
    tensors = make()
    seconds = time.perf_counter() - start
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            torch.save({k: v.detach().cpu() for k, v in tensors.items()}, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return tensors, {"hit": False, "path": None if path is None else str(path), "seconds": seconds}
