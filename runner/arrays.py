"""Vector- and matrix-valued metrics (per-run positions, per-node states, spectra, r-sweep curves,
samples) live beside `metrics.csv`, not in its column names.

A metric value that is an array (a tensor or numpy array with at least one dimension) goes to
`arrays/<key>/<chunk>.npz`: one file per flush holding `step` (the steps that logged it) and
`value` (the values stacked, `value_<i>` when their shapes differ). Chunks are written once and
never rewritten, so the writer keeps only the current flush in memory. `read_array(run_dir, key)`
puts a key back together; claims and figures, which get a run's metrics table, use
`run_array(metrics, key)`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from runner.errors import OptrunError

_KEY = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


def is_array(value) -> bool:
    """True for values that belong in the array store rather than a CSV cell."""
    if isinstance(value, torch.Tensor):
        return value.dim() > 0
    return isinstance(value, np.ndarray) and value.ndim > 0


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


class ArrayStore:
    """Append-only chunks of array metrics under `root` (created on the first array)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.pending: dict[str, list[tuple[int, object]]] = {}
        self.chunks: dict[str, int] = {}  # key -> chunks written so far

    def add(self, key: str, step: int, value) -> None:
        if not _KEY.match(key):
            raise OptrunError(f"array metric '{key}': names are letters, digits, '_', '.', '-' and '/' only")
        self.pending.setdefault(key, []).append((int(step), value))

    def flush(self) -> None:
        for key, items in self.pending.items():
            folder = self.root / key
            folder.mkdir(parents=True, exist_ok=True)
            values = [_numpy(v) for _, v in items]
            out = {"step": np.array([s for s, _ in items], dtype=np.int64)}
            if len({v.shape for v in values}) == 1:
                out["value"] = np.stack(values)
            else:
                out.update({f"value_{i}": v for i, v in enumerate(values)})
            i = self.chunks.get(key, 0)
            tmp = folder / f".{i:06d}.tmp{os.getpid()}.npz"
            np.savez(tmp, **out)
            os.replace(tmp, folder / f"{i:06d}.npz")
            self.chunks[key] = i + 1
        self.pending = {}

    def state(self) -> dict[str, int]:
        return dict(self.chunks)

    def restore(self, chunks: dict[str, int]) -> None:
        """Resume: keep the chunks a checkpoint covers, delete the ones written after it."""
        self.chunks, self.pending = dict(chunks), {}
        if not self.root.exists():
            return
        for f in self.root.rglob("*.npz"):
            key = f.parent.relative_to(self.root).as_posix()
            if int(f.stem) >= chunks.get(key, 0):
                f.unlink()


def array_keys(run_dir: str | Path) -> list[str]:
    root = Path(run_dir) / "arrays"
    return sorted({f.parent.relative_to(root).as_posix() for f in root.rglob("*.npz")}) if root.exists() else []


def read_array(run_dir: str | Path, key: str) -> tuple[np.ndarray, np.ndarray | list[np.ndarray]]:
    """(steps, values) of array metric `key` of a run: values stacked along axis 0 when every value
    has the same shape, else a list."""
    folder = Path(run_dir) / "arrays" / key
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise OptrunError(f"{folder}: no array metric '{key}' in this run (arrays: {', '.join(array_keys(run_dir)) or 'none'})")
    steps, values = [], []
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            steps.append(z["step"])
            if "value" in z:
                values.extend(list(z["value"]))
            else:
                values.extend(z[f"value_{i}"] for i in range(len(z["step"])))
    if len({v.shape for v in values}) == 1:
        return np.concatenate(steps), np.stack(values)
    return np.concatenate(steps), values


def run_array(metrics, key: str):
    """`read_array` for the run a metrics DataFrame came from (claims get the DataFrame; the engine
    and the reporter record the run folder in `metrics.attrs["run_dir"]`)."""
    run_dir = getattr(metrics, "attrs", {}).get("run_dir")
    if run_dir is None:
        raise OptrunError(f"array metric '{key}': this metrics table does not say which run it is from")
    return read_array(run_dir, key)
