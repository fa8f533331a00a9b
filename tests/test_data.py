"""Data sets: embedded ones offline, continual splits, and the real loaders on small local files."""
import pickle
import struct

import numpy as np
import pytest
import torch

from runner.data import load
from runner.data.continual import rotate, rotated, split
from runner.errors import OptrunError


def test_digits_shapes_and_stratified_split():
    d = load("digits", seed=0)
    assert d.input_shape == (1, 8, 8) and d.n_classes == 10
    assert len(d.y_train) + len(d.y_test) == 1797
    assert abs(len(d.y_test) / 1797 - 0.3) < 0.01
    assert float(d.x_train.max()) <= 1.0 and float(d.x_train.min()) >= 0.0
    assert torch.equal(load("digits", seed=0).y_test, d.y_test)  # same seed, same split
    assert not torch.equal(load("digits", seed=1).y_test, d.y_test)


def test_split_tasks_partition_classes():
    c = split({"name": "digits"}, seed=0, n_tasks=5)
    assert c.n_tasks == 5 and c.kind == "class"
    assert [t.classes for t in c.tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    for t in c.tasks:
        assert set(t.y_train.unique().tolist()) == set(t.classes) == set(t.y_test.unique().tolist())
    with pytest.raises(OptrunError, match="n_tasks"):
        split({"name": "digits"}, n_tasks=3)


def test_rotation_is_exact_for_multiples_of_90():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    assert torch.equal(rotate(x, 0), x)
    assert torch.equal(rotate(x, 90), torch.rot90(x, 1, dims=(2, 3)))
    assert torch.equal(rotate(rotate(x, 180), 180), x)
    c = rotated({"name": "digits"}, angles=[0, 90, 180])
    assert c.kind == "domain" and c.n_tasks == 3
    assert torch.equal(c.tasks[2].x_test, torch.rot90(c.tasks[0].x_test, 2, dims=(2, 3)))


def test_mnist1d_generated_locally_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTRUN_CACHE", str(tmp_path))
    d = load("mnist1d", seed=3, num_samples=200)
    assert d.input_shape == (1, 40) and len(d.y_train) == 160 and len(d.y_test) == 40
    (cache,) = tmp_path.glob("mnist1d-*.npz")
    assert torch.equal(load("mnist1d", seed=3, num_samples=200).x_train, d.x_train)
    # a cache that holds a pickled object (np.savez pickles object arrays) is regenerated, never unpickled
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled')",))

    np.savez(cache.with_suffix(""), x=np.array([Boom()], dtype=object), y=np.zeros(1), x_test=np.zeros(1),
             y_test=np.zeros(1))
    assert torch.equal(load("mnist1d", seed=3, num_samples=200).x_train, d.x_train)


def _write_idx(path, arr: np.ndarray):
    dims = arr.shape
    magic = 0x0800 | len(dims)  # unsigned byte data
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in dims))
        f.write(arr.astype(np.uint8).tobytes())


def test_mnist_reads_local_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 8)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    d = load("mnist", data_dir=str(tmp_path))
    assert d.input_shape == (1, 28, 28) and len(d.y_train) == 20 and len(d.y_test) == 8
    assert d.y_train.tolist()[:3] == [0, 1, 2] and float(d.x_train.max()) <= 1.0


def test_missing_data_names_path_and_download_option(tmp_path):
    with pytest.raises(OptrunError) as e:
        load("mnist", data_dir=str(tmp_path / "nowhere"))
    msg = str(e.value)
    assert "nowhere" in msg and "train-images-idx3-ubyte" in msg and "download=true" in msg
    with pytest.raises(OptrunError, match="download=true"):
        load("cifar10", data_dir=str(tmp_path))


def test_cifar10_reads_local_pickle_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(range(4))}
        (folder / name).write_bytes(pickle.dumps(batch))
    d = load("cifar10", data_dir=str(tmp_path))
    assert d.input_shape == (3, 32, 32) and len(d.y_train) == 20 and len(d.y_test) == 4
    assert abs(float(d.x_train.mean())) < 1e-5  # normalised with training statistics


def test_unknown_dataset_name():
    with pytest.raises(OptrunError, match="unknown data set 'nope'"):
        load("nope")


def test_digits_split_is_cached_and_a_broken_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTRUN_CACHE", str(tmp_path))
    first = load("digits", seed=3)
    (cached,) = tmp_path.glob("digits-seed3-*.pt")
    again = load("digits", seed=3)  # from the cache: the same split
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(first, k), getattr(again, k))
    assert not torch.equal(load("digits", seed=4).y_test, first.y_test)  # another seed, another split
    cached.write_bytes(b"truncated")
    rebuilt = load("digits", seed=3)
    assert torch.equal(rebuilt.x_test, first.x_test) and cached.stat().st_size > 1000
