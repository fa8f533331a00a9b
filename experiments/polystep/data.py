"""The 4-class synthetic spiking starter of the PolyStep repository (`examples/02_snn_starter.py`):
16 input features, each class "on" in its own block of 4 features, templates perturbed by
N(0, 0.2²) and clipped to [0, 1], samples = template + N(0, 0.15²), clipped to [0, 1]; 256 train and
64 test samples. Unlike the official script (whose test set is drawn with another seed, hence from
other templates) train and test here share the templates of one seed, so the test set measures the
task the network was trained on.
"""
from __future__ import annotations

import torch

from runner.data import Dataset


def snn_templates(seed: int = 0, n_train: int = 256, n_test: int = 64, dim: int = 16, n_classes: int = 4,
                  template_noise: float = 0.2, sample_noise: float = 0.15, **_) -> Dataset:
    g = torch.Generator().manual_seed(10_007 + int(seed))
    block = max(1, dim // n_classes)
    templates = torch.zeros(n_classes, dim)
    for c in range(n_classes):
        templates[c, c * block:min(dim, (c + 1) * block)] = 1.0
    templates = (templates + template_noise * torch.randn(n_classes, dim, generator=g)).clamp(0, 1)

    def draw(n):
        y = torch.randint(0, n_classes, (n,), generator=g)
        return (templates[y] + sample_noise * torch.randn(n, dim, generator=g)).clamp(0, 1), y

    (x_tr, y_tr), (x_te, y_te) = draw(n_train), draw(n_test)
    return Dataset(x_tr, y_tr, x_te, y_te, n_classes=n_classes, name="snn_templates")
