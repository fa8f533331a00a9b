"""One `seed` drives everything; each consumer gets its own stream, a generator seeded from
(seed, name) alone: `data`, `init` (`init.<component>` for named components), `batch`, `replay`,
`solver` (made by `dispatch.build`), `hook.<name>` for each hook, `trainer.<part>` for a trainer's
own draws (`TrainState.stream`), and optimizers' own (`langevin`), data sources' (`layers` of the
progressive trainer). Separate generators mean that adding or removing a probe shifts neither the
batches the trainer draws nor any other probe's numbers.
"""
import hashlib
import random

import numpy as np
import torch

STREAMS = ("data", "init", "batch", "replay", "solver")  # made at build; any other name: TrainState.stream


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
