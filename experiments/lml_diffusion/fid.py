"""FID for the paper scale, from local files only: torchvision's Inception-v3 (pool features, 2048-d)
with weights at `data_dir/inception_path`, against CIFAR-10 training images read from
`data_dir/cifar-10-batches-py`. Missing files give NaN (the run is still a valid sampling run).

This is torchvision's Inception, not the TF-FID Inception of the paper's tables, so absolute numbers are
comparable between our arms but only roughly with the paper's FIDs.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch


def cifar_train_images(data_dir: Path, limit: int = 50000) -> torch.Tensor | None:
    """CIFAR-10 training images in [-1, 1], shape (N, 3, 32, 32), from the python pickles."""
    folder = Path(data_dir) / "cifar-10-batches-py"
    files = sorted(folder.glob("data_batch_*"))
    if not files:
        return None
    arrays = []
    for f in files:
        with open(f, "rb") as fh:
            arrays.append(pickle.load(fh, encoding="bytes")[b"data"])
    x = np.concatenate(arrays)[:limit].reshape(-1, 3, 32, 32).astype(np.float32)
    return torch.from_numpy(x / 127.5 - 1.0)


def inception(path: Path):
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    net.load_state_dict(torch.load(path, map_location="cpu"))
    net.fc = torch.nn.Identity()
    return net.eval()


@torch.no_grad()
def features(net, x: torch.Tensor, batch: int) -> np.ndarray:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    for xb in x.float().cpu().split(batch):
        xb = torch.nn.functional.interpolate((xb + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False)
        out.append(net((xb - mean) / std).double().numpy())
    return np.concatenate(out)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def fid_or_nan(x: torch.Tensor, data_dir: Path, inception_path: str, batch: int) -> float:
    weights, real = Path(data_dir) / inception_path, cifar_train_images(data_dir)
    if not weights.exists() or real is None:
        return float("nan")
    net = inception(weights)
    return frechet(features(net, x, batch), features(net, real, batch))
