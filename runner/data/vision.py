"""Real image data sets read from `data_dir` (paper scale). Nothing is downloaded unless
`download=true`; a missing file is reported with its path and that option.

`stand_in=true` replaces the files by random tensors of the same shapes, value range and classes
(512 training and 256 test examples), so that every paper-scale config can run a few steps on a
CPU in the tests without the data.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from runner.data import Dataset, register
from runner.errors import OptrunError


def _require(path: Path, name: str) -> None:
    if not path.exists():
        raise OptrunError(f"dataset '{name}': missing file {path} (set dataset.data_dir to where it lives, "
                          f"or add dataset.download=true to fetch it)")


def stand_in_data(name: str, shape: tuple[int, ...], seed: int, n_train: int = 512, n_test: int = 256,
                  n_classes: int = 10) -> Dataset:
    """Random images of `shape` in [0, 1] with every class present: the data set's shapes, not its content."""
    g = torch.Generator().manual_seed(seed)
    y = lambda n: torch.arange(n) % n_classes  # noqa: E731
    return Dataset(torch.rand(n_train, *shape, generator=g), y(n_train), torch.rand(n_test, *shape, generator=g),
                   y(n_test), n_classes=n_classes, name=f"{name}-stand-in", classes=tuple(range(n_classes)))


def _torchvision_idx(cls, name: str, data_dir: str, download: bool) -> Dataset:
    root = Path(data_dir).expanduser()
    if not download:
        raw = root / cls.__name__ / "raw"
        for url, _ in cls.resources:
            _require(raw / Path(url).name.removesuffix(".gz"), name)
    train, test = cls(str(root), train=True, download=download), cls(str(root), train=False, download=download)
    x = lambda d: (d.data.float() / 255.0)[:, None]  # noqa: E731
    return Dataset(x(train), train.targets.long(), x(test), test.targets.long(), n_classes=10, name=name,
                   classes=tuple(range(10)))


@register("mnist")
def mnist(seed: int = 0, data_dir: str = "data", download: bool = False, stand_in: bool = False, **_) -> Dataset:
    if stand_in:
        return stand_in_data("mnist", (1, 28, 28), seed)
    from torchvision.datasets import MNIST

    return _torchvision_idx(MNIST, "mnist", data_dir, download)


@register("fashion_mnist")
def fashion_mnist(seed: int = 0, data_dir: str = "data", download: bool = False, stand_in: bool = False, **_) -> Dataset:
    if stand_in:
        return stand_in_data("fashion_mnist", (1, 28, 28), seed)
    from torchvision.datasets import FashionMNIST

    return _torchvision_idx(FashionMNIST, "fashion_mnist", data_dir, download)


CIFAR_DIR = "cifar-10-batches-py"


@register("cifar10")
def cifar10(seed: int = 0, data_dir: str = "data", download: bool = False, stand_in: bool = False, **_) -> Dataset:
    """CIFAR-10 from the python pickle batches (read directly: torchvision's md5 check would reject
    anything but the exact archive). Normalised per channel with the training-set statistics."""
    if stand_in:
        return stand_in_data("cifar10", (3, 32, 32), seed)
    root = Path(data_dir).expanduser()
    if download:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=True, download=True)
    folder = root / CIFAR_DIR

    def read(files):
        xs, ys = [], []
        for f in files:
            _require(folder / f, "cifar10")
            with open(folder / f, "rb") as fh:
                batch = pickle.load(fh, encoding="latin1")
            xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch["labels"], dtype=np.int64))
        return torch.from_numpy(np.concatenate(xs)).float() / 255.0, torch.from_numpy(np.concatenate(ys))

    x_tr, y_tr = read([f"data_batch_{i}" for i in range(1, 6)])
    x_te, y_te = read(["test_batch"])
    mean, std = x_tr.mean(dim=(0, 2, 3), keepdim=True), x_tr.std(dim=(0, 2, 3), keepdim=True)
    return Dataset((x_tr - mean) / std, y_tr, (x_te - mean) / std, y_te, n_classes=10, name="cifar10",
                   classes=tuple(range(10)))
