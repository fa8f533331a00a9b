"""One `seed` drives everything; each consumer (data, init, batching, probes) gets its own stream.

Separate generators mean that adding a probe never shifts the batches the trainer draws.
"""
import hashlib
import random

import numpy as np
import torch

STREAMS = ("data", "init", "batch", "probe", "replay", "solver")


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed derived from (seed, stream), stable across Python versions and runs."""
    digest = hashlib.sha256(f"{int(seed)}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(stream_seed(seed, stream))
    return g


def seed_everything(seed: int) -> None:
    """Seed the global RNGs too, for libraries that draw from them (e.g. default module init)."""
    random.seed(stream_seed(seed, "python"))
    np.random.seed(stream_seed(seed, "numpy") % (2**32))
    torch.manual_seed(stream_seed(seed, "init"))
