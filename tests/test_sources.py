"""Data sources: IndexSampler identity, determinism per seed, independence from the global RNGs, resume
identity through a weights_only checkpoint, the batched CIFAR augmentation, and gymnasium rollouts."""
import io
import subprocess
import sys

import numpy as np
import pytest
import torch

from runner.data.sources import EnvSource, GeneratedSource, LoaderSource, RandomCropFlip, Source, TensorSource
from runner.errors import OptrunError
from runner.trainers.base import IndexSampler


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ready(source: Source, seed: int = 0) -> Source:
    source.setup(gen(seed), "cpu")
    return source


def roundtrip(sd: dict) -> dict:
    """Through a checkpoint file as the engine reads it (weights_only: tensors, numbers, containers only)."""
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def draws(source: Source, k: int, disturb: bool = False, **context) -> list:
    out = []
    for i in range(k):
        if disturb:  # whatever the global RNGs do in between must change nothing
            torch.manual_seed(1000 + i)
            np.random.seed(1000 + i)
            torch.rand(7)
        out.append(source.next(**context))
    return out


def check_source(make, disturb_ok: bool = True, **context) -> None:
    """Determinism per seed, independence from the global RNGs, a different seed gives other data, and
    resume identity: 7 batches, save, 5 more; a fresh source loaded from the save gives the same 5."""
    a, b = ready(make(), 3), ready(make(), 3)
    first = draws(a, 4, **context)
    assert all(same(x, y) for x, y in zip(first, draws(b, 4, disturb=disturb_ok, **context)))
    assert not all(same(x, y) for x, y in zip(first, draws(ready(make(), 4), 4, **context)))
    src = ready(make(), 5)
    draws(src, 7, **context)
    sd = roundtrip(src.state_dict())
    after = draws(src, 5, **context)
    fresh = ready(make(), 99)  # another seed: everything must come from the state dict
    fresh.load_state_dict(sd)
    assert all(same(x, y) for x, y in zip(after, draws(fresh, 5, **context)))


# --- TensorSource ------------------------------------------------------------------------------------------

def data(n: int = 10):
    x = torch.arange(n * 3, dtype=torch.float32).view(n, 3)
    return x, torch.arange(n)


@pytest.mark.parametrize("n,bs", [(10, 3), (10, 4), (12, 4), (10, 1)])
def test_tensor_source_yields_index_sampler_batches(n, bs):
    x, y = data(n)
    sampler, src = IndexSampler(n, bs, gen(7)), ready(TensorSource((x, y), bs), 7)
    for _ in range(5 * sampler.batches_per_epoch() + 1):  # several epochs, uneven last batches included
        idx = sampler.next()
        bx, by = src.next()
        assert torch.equal(by, y[idx]) and torch.equal(bx, x[idx])
    assert src.batches_per_epoch() == sampler.batches_per_epoch() and src.epoch == sampler.epoch == 5
    assert torch.equal(src.generator.get_state(), sampler.generator.get_state())


@pytest.mark.parametrize("bs", [None, 10, 50])
def test_tensor_source_full_batch_draws_nothing(bs):
    x, y = data(10)
    src = ready(TensorSource((x, y), bs))
    before = src.generator.get_state()
    for _ in range(3):
        bx, by = src.next()
        assert bx is src.tensors[0] and torch.equal(by, y)
    assert torch.equal(src.generator.get_state(), before) and src.batches_per_epoch() == 1


def test_tensor_source_determinism_and_resume():
    check_source(lambda: TensorSource(data(10), 3))
    check_source(lambda: TensorSource(torch.randn(20, 3, 8, 8, generator=gen(0)), 6, transform=RandomCropFlip(2)))


def test_transform_does_not_change_the_order():
    x, y = torch.randn(10, 3, 8, 8, generator=gen(1)), torch.arange(10)
    plain, aug = ready(TensorSource((x, y), 4), 2), ready(TensorSource((x, y), 4, RandomCropFlip()), 2)
    for _ in range(6):
        (px, py), (ax, ay) = plain.next(), aug.next()
        assert torch.equal(py, ay) and ax.shape == px.shape and not torch.equal(ax, px)


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(OptrunError, match="batch_size"):
        TensorSource(data(4), 0)
    with pytest.raises(OptrunError, match="differ in length"):
        TensorSource((torch.zeros(3), torch.zeros(4)), 2)
    with pytest.raises(OptrunError, match="empty"):
        TensorSource(torch.zeros(0, 2), 2)
    with pytest.raises(OptrunError, match="padding"):
        RandomCropFlip(-1)
    with pytest.raises(OptrunError, match="no batch"):
        LoaderSource(torch.utils.data.TensorDataset(torch.zeros(3)), 4, drop_last=True)
    with pytest.raises(OptrunError, match="N, C, H, W"):
        RandomCropFlip()((torch.zeros(2, 8, 8),), gen(0))


# --- RandomCropFlip ----------------------------------------------------------------------------------------

def images(n: int = 64, c: int = 3, h: int = 8, w: int = 10):
    return torch.randn(n, c, h, w, generator=gen(11))


def test_crop_flip_deterministic_and_shape_preserving():
    x, y = images(), torch.arange(64)
    out, oy = RandomCropFlip(4)((x, y), gen(0))
    assert out.shape == x.shape and out.dtype == x.dtype and oy is y
    assert torch.equal(out, RandomCropFlip(4)((x, y), gen(0))[0])
    assert not torch.equal(out, RandomCropFlip(4)((x, y), gen(1))[0])
    u8 = (torch.rand(4, 3, 8, 8, generator=gen(2)) * 255).to(torch.uint8)
    assert RandomCropFlip(2)((u8,), gen(0))[0].dtype == torch.uint8


def test_flip_only_flips_about_half_exactly():
    x = images(n=2000)
    (out,) = RandomCropFlip(padding=0)((x,), gen(3))
    kept = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((kept ^ flipped).all())  # each image is itself or its mirror image, nothing else
    assert abs(int(flipped.sum()) - 1000) < 4 * (2000 * 0.25) ** 0.5


def test_crop_only_gives_shifted_windows_of_the_padded_image():
    p, x = 3, images(n=200)
    (out,) = RandomCropFlip(padding=p, flip=False)((x,), gen(4))
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    h, w, shifts = x.shape[2], x.shape[3], set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                if torch.equal(out[i], padded[i, :, dy:dy + h, dx:dx + w])]
        assert hits, f"image {i} is no window of its padded image"
        shifts.update(hits)
    assert len(shifts) > 0.8 * (2 * p + 1) ** 2  # the offsets spread over the whole range


# --- LoaderSource ------------------------------------------------------------------------------------------

class NoisyDataset(torch.utils.data.Dataset):
    """A per-sample random transform drawing from the global RNGs, as torchvision / numpy code does."""

    def __init__(self, n: int = 20):
        self.x = torch.arange(n * 2, dtype=torch.float32).view(n, 2)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + torch.rand(2) + float(np.random.rand()), torch.tensor(i)


def test_loader_source_epochs_are_permutations():
    src = ready(LoaderSource(torch.utils.data.TensorDataset(torch.arange(20.0), torch.arange(20)), 6))
    assert src.batches_per_epoch() == 4
    for _ in range(3):
        ys = torch.cat([src.next()[1] for _ in range(4)])
        assert sorted(ys.tolist()) == list(range(20))
    assert src.epoch == 2
    dropped = ready(LoaderSource(torch.utils.data.TensorDataset(torch.arange(20)), 6, drop_last=True))
    assert dropped.batches_per_epoch() == 3 and all(len(b[0]) == 6 for b in draws(dropped, 7))


def test_loader_source_determinism_resume_and_global_rng():
    check_source(lambda: LoaderSource(NoisyDataset(20), 3))  # 7 batches per epoch: the resume crosses an epoch
    check_source(lambda: LoaderSource(NoisyDataset(20), 6, drop_last=True))
    torch.manual_seed(0)
    before = torch.get_rng_state(), np.random.get_state()[1].copy()
    draws(ready(LoaderSource(NoisyDataset(20), 3)), 9)
    assert torch.equal(torch.get_rng_state(), before[0]) and np.array_equal(np.random.get_state()[1], before[1])


def test_loader_source_batch_transform_on_the_device():
    ds = torch.utils.data.TensorDataset(torch.randn(12, 3, 6, 6, generator=gen(0)), torch.arange(12))
    check_source(lambda: LoaderSource(ds, 5, transform=RandomCropFlip(2)))


def test_loader_source_workers_give_the_same_batches():
    zero = draws(ready(LoaderSource(NoisyDataset(20), 3), 8), 9)
    two = ready(LoaderSource(NoisyDataset(20), 3, num_workers=2), 8)
    assert all(same(a, b) for a, b in zip(zero, draws(two, 9)))


# --- GeneratedSource ---------------------------------------------------------------------------------------

def teacher(n, generator, device):
    x = torch.randn(n, 5, generator=generator, device=device)
    return x, torch.tanh(x @ torch.linspace(-1, 1, 5, device=device))


def test_generated_source():
    check_source(lambda: GeneratedSource(teacher, 8))
    src = ready(GeneratedSource(teacher, 8))
    x, y = src.next()
    assert x.shape == (8, 5) and y.shape == (8,) and src.batches_per_epoch() is None and src.batches == 1


# --- EnvSource ---------------------------------------------------------------------------------------------

def softmax_policy(seed: int = 0):
    """A random linear-softmax policy over CartPole's 2 actions; log-probs keep their graph."""
    w = torch.randn(2, 4, generator=gen(seed)).requires_grad_()

    def policy(obs, generator):
        logp = torch.log_softmax(w @ obs, -1)
        a = torch.multinomial(logp.detach().exp(), 1, generator=generator)[0]
        return a, logp[a]

    policy.w = w
    return policy


def test_env_source_rollouts():
    pytest.importorskip("gymnasium")
    policy = softmax_policy()
    src = ready(EnvSource("CartPole-v1", max_episode_steps=60), 1)
    r = src.next(policy=policy, n=4)
    T = 60
    assert r["observations"].shape == (4, T, 4) and r["actions"].shape == (4, T) and r["rewards"].shape == (4, T)
    assert r["mask"].shape == r["terminated"].shape == r["log_probs"].shape == (4, T)
    assert r["final_observations"].shape == (4, 4) and r["observations"].dtype == torch.float32
    lengths = r["mask"].sum(1)
    assert torch.equal(lengths, r["lengths"]) and torch.equal(r["returns"], r["rewards"].sum(1))
    assert torch.equal(r["returns"], lengths.float())  # CartPole: reward 1 per step
    for e, n in enumerate(lengths.tolist()):
        assert bool(r["mask"][e, :n].all()) and not bool(r["mask"][e, n:].any())
        assert int(r["terminated"][e].sum()) == (1 if bool(r["terminated"][e, n - 1]) else 0)
        assert bool((r["log_probs"][e, n:] == 0).all()) and bool((r["log_probs"][e, :n] < 0).all())
        if n < T:  # CartPole ends before 60 steps only by terminating
            assert bool(r["terminated"][e, n - 1])
    (-(r["log_probs"].sum(1) * r["returns"]).mean()).backward()  # a REINFORCE loss differentiates
    assert policy.w.grad is not None and bool(policy.w.grad.abs().sum() > 0)
    assert src.episodes == 4 and src.env_steps == int(lengths.sum())
    src.next(policy=policy, n=2, horizon=5)
    assert src.episodes == 6 and src.env_steps == int(lengths.sum()) + 10  # a random policy outlives 5 steps
    assert src.state_dict()["env_steps"] == src.env_steps and src.batches_per_epoch() is None
    src.close()


def test_env_source_determinism_and_resume():
    pytest.importorskip("gymnasium")
    policy = softmax_policy()
    check_source(lambda: EnvSource("CartPole-v1", max_episode_steps=40), policy=policy, n=2)
    nohorizon = ready(EnvSource("CartPole-v1"))
    assert nohorizon.max_episode_steps == 500
    with pytest.raises(OptrunError, match="policy"):
        nohorizon.next()
    with pytest.raises(OptrunError, match="env_id"):
        EnvSource("NoSuchEnv-v0")


def test_env_source_without_gymnasium(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    with pytest.raises(OptrunError, match="pip install gymnasium"):
        EnvSource("CartPole-v1")


def test_importing_the_module_does_not_import_gymnasium():
    code = "import sys, runner.data.sources; print('gymnasium' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_env_source_continuous_actions():
    pytest.importorskip("gymnasium")

    def uniform(obs, generator):  # no log-prob: the rollout then has none
        return 4 * torch.rand(1, generator=generator) - 2, None

    src = ready(EnvSource("Pendulum-v1", max_episode_steps=20), 2)
    r = src.next(policy=uniform, n=3)
    assert r["actions"].shape == (3, 20, 1) and r["actions"].dtype == torch.float32 and "log_probs" not in r
    assert r["observations"].shape == (3, 20, 3) and bool(r["mask"].all()) and not bool(r["terminated"].any())
    assert src.env_steps == 60 and len(set(r["actions"].flatten().tolist())) == 60
