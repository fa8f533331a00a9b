"""The edge-of-stability data of Cohen et al. (2021): the first `n_train` CIFAR-10 training images.

Their `cifar10-5k` keeps the first 5,000 images of the training set in its stored order (the python
batches' order: `data_batch_1` first), after standardising every input feature (pixel and channel)
with the mean and standard deviation of all 50,000 training images; the test set stays whole. The
subset is therefore fixed, not drawn from the seed. The shared `cifar10` loader normalises per channel;
a per-feature standardisation removes any per-channel affine map, so standardising its output per
feature gives their inputs exactly (up to float rounding).
"""
from __future__ import annotations

from dataclasses import replace

from runner.data import Dataset
from runner.data.vision import cifar10
from runner.errors import OptrunError


def cifar10_first(seed: int = 0, n_train: int = 5000, data_dir: str = "data", download: bool = False,
                  stand_in: bool = False, **_) -> Dataset:
    """CIFAR-10 with the first `n_train` training images, standardised per feature over all 50,000."""
    if not isinstance(n_train, int) or n_train <= 0:
        raise OptrunError(f"dataset.n_train: expected a positive integer, got {n_train}")
    full = cifar10(seed=seed, data_dir=data_dir, download=download, stand_in=stand_in)
    mean, std = full.x_train.mean(0, keepdim=True), full.x_train.std(0, unbiased=False, keepdim=True)
    std = std.clamp_min(1e-8)  # a constant feature (only in stand-in data) stays finite
    x_tr, x_te = (full.x_train - mean) / std, (full.x_test - mean) / std
    if stand_in:  # random tensors of CIFAR-10's shapes (tests): as many images as the stand-in has
        n_train = min(n_train, len(x_tr))
    if n_train > len(x_tr):
        raise OptrunError(f"dataset.n_train: {n_train} images asked for, the training set has {len(x_tr)}")
    return replace(full, x_train=x_tr[:n_train], y_train=full.y_train[:n_train], x_test=x_te,
                   name=f"cifar10_first{n_train}")
