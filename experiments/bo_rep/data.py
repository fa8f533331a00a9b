"""The hyper-cleaning data: MNIST or Fashion-MNIST from local IDX files, with label noise.

The paper cleans Sentiment140 (GloVe-300d inputs, an RNN); neither the text nor the embeddings can be
had offline, so the paper scale runs on an image stand-in, as the issue asks. The files are the
standard IDX ones (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-...`, optionally
`.gz`), looked for in `data_dir`, `data_dir/<name>`, and torchvision's `data_dir/MNIST/raw` or
`data_dir/FashionMNIST/raw`. Nothing is downloaded.

The split: `n_train` noisy training samples and `n_val` clean validation samples, disjoint, drawn
from the training images by the data stream (the seed); each training label is replaced with
probability `noise_rate` by a uniformly drawn *other* class; the test set is the 10k test images
(the first `n_test`). `stand_in=True` gives random tensors of the same shapes (tests; no files read).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from runner.errors import OptrunError

FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
         "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
FOLDERS = {"mnist": ("", "mnist", "MNIST/raw"), "fashion_mnist": ("", "fashion_mnist", "FashionMNIST/raw")}
N_CLASSES = 10


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (magic: two zero bytes, a type byte 0x08 = uint8, the number of dimensions; then big-endian sizes)."""
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise OptrunError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise OptrunError(f"{path}: expected {int(np.prod(shape))} values for shape {shape}, found {data.size}")
    return data.reshape(shape)


def _find(data_dir: Path, name: str, stem: str) -> Path:
    for sub in FOLDERS[name]:
        for suffix in ("", ".gz"):
            p = data_dir / sub / (stem + suffix)
            if p.is_file():
                return p
    raise OptrunError(f"hyper-cleaning data: {stem}[.gz] not found under {data_dir} (looked in "
                      f"{', '.join(str(data_dir / s) for s in FOLDERS[name])}); put the {name} IDX files there")


def load_digits() -> dict[str, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1797 images, offline): the first 1500 as the training pool,
    the rest as the test set; for a quick check of the pipeline on real images, not the paper's setup."""
    from sklearn.datasets import load_digits as sk_digits

    x, y = sk_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return {"train_x": x[:1500], "train_y": y[:1500].astype(np.int64), "test_x": x[1500:], "test_y": y[1500:].astype(np.int64)}


def load_images(data_dir: str, name: str) -> dict[str, np.ndarray]:
    """{train_x (n, 784) float in [0, 1], train_y, test_x, test_y} from the IDX files (`digits`: 8x8, bundled)."""
    if name == "digits":
        return load_digits()
    if name not in FOLDERS:
        raise OptrunError(f"trainer.dataset: unknown '{name}' (expected one of: {', '.join(FOLDERS)})")
    out = {}
    for key, stem in FILES.items():
        arr = read_idx(_find(Path(data_dir).expanduser(), name, stem))
        out[key] = arr.reshape(arr.shape[0], -1).astype(np.float32) / 255.0 if key.endswith("_x") else arr.astype(np.int64)
    return out


def flip_labels(labels: torch.Tensor, rate: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy labels, mask of the flipped ones): each label moves with probability `rate` to another class."""
    flip = torch.rand(labels.shape, generator=generator) < rate
    shift = torch.randint(1, N_CLASSES, labels.shape, generator=generator)
    return torch.where(flip, (labels + shift) % N_CLASSES, labels), flip


def cleaning_split(data_dir: str, name: str, n_train: int, n_val: int, n_test: int, noise_rate: float,
                   generator: torch.Generator, stand_in: bool = False) -> tuple[torch.Tensor, ...]:
    """(train inputs, noisy train labels, noisy mask, val inputs, val labels, test inputs, test labels), on the CPU."""
    if stand_in:
        d = {"train_x": torch.rand(n_train + n_val, 784, generator=generator).numpy(),
             "train_y": torch.randint(N_CLASSES, (n_train + n_val,), generator=generator).numpy(),
             "test_x": torch.rand(n_test, 784, generator=generator).numpy(),
             "test_y": torch.randint(N_CLASSES, (n_test,), generator=generator).numpy()}
    else:
        d = load_images(data_dir, name)
    n = d["train_x"].shape[0]
    if n_train + n_val > n:
        raise OptrunError(f"hyper-cleaning: n_train + n_val = {n_train + n_val} exceeds the {n} training images")
    perm = torch.randperm(n, generator=generator)
    tr, va = perm[:n_train], perm[n_train:n_train + n_val]
    x, y = torch.from_numpy(d["train_x"]), torch.from_numpy(d["train_y"])
    noisy_y, noisy = flip_labels(y[tr], noise_rate, generator)
    return (x[tr], noisy_y, noisy, x[va], y[va], torch.from_numpy(d["test_x"][:n_test]),
            torch.from_numpy(d["test_y"][:n_test]))
