"""Data sources: one protocol for every kind of data a trainer draws batches from.

A trainer asks its source for the next batch and never cares where it comes from: tensors already on the
device (`TensorSource`, the fast path), a map-style torch Dataset read through a DataLoader (`LoaderSource`),
data made in code (`GeneratedSource`) or episodes of a gymnasium environment (`EnvSource`).

Each source draws only from the torch.Generator it is given in `setup` (one of the run's streams, see
runner.seeding), never from the global RNGs: adding a probe, or a library that calls np.random, never changes
the data, and a source restored from its `state_dict` continues with bit-identical batches. State dicts hold
only tensors, numbers, strings and lists/dicts of them (checkpoints are read with torch.load(weights_only=True))
and include the generator's state, so a source resumes identically even if its caller does not restore it.
"""
from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from runner.errors import OptrunError
from runner.seeding import stream_seed

SEED_HIGH = 2**62  # per-sample / per-episode seeds are drawn below this


def _integer(key: str, value, low: int = 1, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "positive" if low == 1 else "non-negative"
        raise OptrunError(f"{key}: expected a {kind} integer{' or null' if allow_none else ''}, got {value!r}")
    return value


def _as_tuple(batch) -> tuple:
    return (batch,) if isinstance(batch, torch.Tensor) else tuple(batch)


def _derived(generator: torch.Generator, name: str) -> torch.Generator:
    """A second generator on `generator`'s device, seeded from it without drawing from it: a transform's draws
    then never shift the data order (runs with and without augmentation see the same batches)."""
    return torch.Generator(device=generator.device).manual_seed(stream_seed(generator.initial_seed(), name))


def _restore(generator: torch.Generator | None, state) -> None:
    if generator is not None and state is not None:
        generator.set_state(state.cpu())  # a resume may have moved it to the device with the rest


class Source:
    """The protocol (subclass it or duck-type it). Call `setup` once, then `next` for every batch."""

    def setup(self, generator: torch.Generator, device=None) -> None:
        """Bind the source to its own random stream and to the device its batches go to."""
        self.generator = generator
        self.device = torch.device(device) if device is not None else generator.device

    def next(self, **context):
        """The next batch: a tuple of tensors on the device (EnvSource: a dict of rollout tensors)."""
        raise NotImplementedError

    def batches_per_epoch(self) -> int | None:
        """Batches in one pass over the data; None where there is no such pass (generated data, environments)."""
        return None

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, sd: dict) -> None:
        raise NotImplementedError


class TensorSource(Source):
    """In-memory tensors sampled by index, with no DataLoader and no per-sample Python.

    One permutation per epoch drawn on the generator's device, slices of `batch_size`, the last one smaller (no
    sample is dropped): exactly the batches of runner.trainers.base.IndexSampler for the same generator.
    `batch_size=None` (or >= n) is the full batch on every call, drawn without random numbers. `transform(batch,
    generator) -> batch` (e.g. RandomCropFlip) runs on the device after the gather, with a generator of its own
    derived from ours, so that switching it on does not change which samples each batch holds."""

    def __init__(self, tensors, batch_size: int | None = None, transform=None):
        tensors = _as_tuple(tensors)
        n = len(tensors[0]) if tensors else 0
        if n == 0:
            raise OptrunError("data: cannot sample batches from an empty set")
        if any(len(t) != n for t in tensors):
            raise OptrunError(f"data: the tensors differ in length ({', '.join(str(len(t)) for t in tensors)})")
        _integer("batch_size", batch_size, allow_none=True)
        self.tensors, self.n, self.transform = tensors, n, transform
        self.batch_size = n if batch_size is None else min(batch_size, n)
        self.perm, self.pos, self.epoch = torch.empty(0, dtype=torch.long), n, -1
        self.aug: torch.Generator | None = None

    def setup(self, generator: torch.Generator, device=None) -> None:
        super().setup(generator, device)
        self.tensors = tuple(t.to(self.device) for t in self.tensors)
        self.aug = _derived(generator, "transform") if self.transform is not None else None

    def next(self, **context) -> tuple:
        if self.batch_size == self.n:  # full batch: no shuffle, no gather
            batch, self.epoch = self.tensors, self.epoch + 1
        else:
            if self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.generator, device=self.generator.device)
                self.pos, self.epoch = 0, self.epoch + 1
            idx = self.perm[self.pos:self.pos + self.batch_size]
            self.pos += len(idx)
            idx = idx.to(self.device)  # a no-op when the generator lives with the data
            batch = tuple(t[idx] for t in self.tensors)
        return batch if self.transform is None else _as_tuple(self.transform(batch, self.aug))

    def batches_per_epoch(self) -> int:
        return -(-self.n // self.batch_size)

    def state_dict(self) -> dict:
        sd = {"perm": self.perm, "pos": self.pos, "epoch": self.epoch, "generator": self.generator.get_state()}
        return sd | ({"aug": self.aug.get_state()} if self.aug is not None else {})

    def load_state_dict(self, sd: dict) -> None:
        self.perm, self.pos, self.epoch = sd["perm"].to(self.generator.device), sd["pos"], sd["epoch"]
        _restore(self.generator, sd.get("generator"))  # absent: the caller restores the stream itself
        _restore(self.aug, sd.get("aug"))


class RandomCropFlip:
    """The CIFAR-10 augmentation as a batch transform: a random crop of the image zero-padded by `padding` on
    each side back to its size, then a horizontal flip with probability 1/2 (`flip=False`: crop only).

    The whole (N, C, H, W) batch is done on its device in one gather: per-sample offsets and flips are drawn as
    tensors from the generator passed in, and each output pixel's source index in the padded image is computed
    from them. It applies to the batch's first tensor; the others (labels) pass through. On normalised data
    zero padding pads with the mean colour."""

    def __init__(self, padding: int = 4, flip: bool = True):
        self.padding, self.flip = _integer("RandomCropFlip.padding", padding, low=0), bool(flip)

    def __call__(self, batch, generator: torch.Generator) -> tuple:
        x, *rest = _as_tuple(batch)
        if x.dim() != 4:
            raise OptrunError(f"RandomCropFlip: expected images of shape (N, C, H, W), got {tuple(x.shape)}")
        n, c, h, w = x.shape
        p, dev = self.padding, x.device
        draw = lambda: torch.randint(0, 2 * p + 1, (n, 1, 1), generator=generator, device=generator.device).to(dev)
        dy, dx = draw(), draw()
        cols = torch.arange(w, device=dev).view(1, 1, w)
        if self.flip:
            flip = torch.rand(n, 1, 1, generator=generator, device=generator.device).to(dev) < 0.5
            cols = torch.where(flip, (w - 1) - cols, cols)
        padded = F.pad(x, (p, p, p, p)) if p else x
        idx = (dy + torch.arange(h, device=dev).view(1, h, 1)) * (w + 2 * p) + dx + cols  # (N, H, W)
        out = padded.flatten(2).gather(2, idx.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
        return (out, *rest)


class _Seeded(torch.utils.data.Dataset):
    """Reads sample i with the global RNGs (torch CPU, numpy, python) seeded from that sample's own seed, so
    random per-sample transforms inside the dataset draw from our stream: the same batches in any worker, with
    any num_workers and after a resume. In the main process (num_workers=0) the global states are put back
    after each batch, so the run's own global RNG is never advanced by data loading."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        return self.__getitems__([item])[0]

    def __getitems__(self, items: list) -> list:
        main = torch.utils.data.get_worker_info() is None
        saved = (torch.get_rng_state(), np.random.get_state(), random.getstate()) if main else None
        try:
            out = []
            for i, seed in items:
                torch.default_generator.manual_seed(seed)
                np.random.seed(seed & 0xFFFFFFFF)
                random.seed(seed)
                out.append(self.dataset[i])
            return out
        finally:
            if saved is not None:
                torch.set_rng_state(saved[0])
                np.random.set_state(saved[1])
                random.setstate(saved[2])


class LoaderSource(Source):
    """A DataLoader over a map-style Dataset (yielding tuples of tensors): for data that needs per-sample work
    (decoding, random augmentation inside the dataset) or does not fit on the device.

    Each epoch's order (one fresh permutation), one seed per sample and the workers' base seed are drawn from
    our stream at its start, and every sample is read with the global RNGs seeded from its own seed (`_Seeded`):
    batches depend on the stream alone, not on num_workers or the global RNGs, and a resume needs only (epoch,
    batches consumed, stream state at the epoch start) to redraw the epoch and start at the next batch, without
    reading the skipped ones. `transform(batch, generator) -> batch` is a batch transform run on the device
    (as TensorSource's); per-sample transforms belong to the dataset. CUDA batches come pinned, non_blocking."""

    def __init__(self, dataset, batch_size: int, transform=None, num_workers: int = 0, drop_last: bool = False):
        _integer("batch_size", batch_size), _integer("num_workers", num_workers, low=0)
        self.dataset, self.n, self.batch_size = dataset, len(dataset), batch_size
        self.transform, self.num_workers, self.drop_last = transform, num_workers, bool(drop_last)
        self.n_batches = self.n // batch_size if drop_last else -(-self.n // batch_size)
        if self.n_batches == 0:
            raise OptrunError(f"batch_size: {batch_size} leaves no batch of the {self.n} samples (drop_last={drop_last})")
        self.epoch, self.consumed = -1, self.n_batches  # the first `next` starts epoch 0
        self.epoch_state = torch.empty(0, dtype=torch.uint8)
        # the loader's batch sampler: this epoch's remaining batches of (index, sample seed), refilled in place
        self.batches: list[list[tuple[int, int]]] = []
        self.loader_generator = torch.Generator()
        self.loader = self.it = self.aug = None

    def setup(self, generator: torch.Generator, device=None) -> None:
        super().setup(generator, device)
        self.aug = _derived(generator, "transform") if self.transform is not None else None
        self.loader = torch.utils.data.DataLoader(
            _Seeded(self.dataset), batch_sampler=self.batches, num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=self.num_workers > 0,
            generator=self.loader_generator)  # its base seed comes from here, not from the global RNG

    def _plan_epoch(self, skip: int) -> None:
        """Draw this epoch's order and seeds from our stream; queue its batches from batch `skip` on."""
        g = self.generator
        self.epoch_state = g.get_state()
        order = torch.randperm(self.n, generator=g, device=g.device).tolist()
        seeds = torch.randint(SEED_HIGH, (self.n + 1,), generator=g, device=g.device).tolist()
        self.loader_generator.manual_seed(seeds[-1])
        pairs, bs = list(zip(order, seeds)), self.batch_size
        self.batches[:] = [pairs[s:s + bs] for s in range(skip * bs, self.n_batches * bs, bs)]
        self.it = None  # a fresh iterator (persistent workers are kept) reads the new batches

    def next(self, **context) -> tuple:
        if self.consumed >= self.n_batches:
            self.epoch, self.consumed = self.epoch + 1, 0
            self._plan_epoch(0)
        if self.it is None:
            self.it = iter(self.loader)
        batch = next(self.it)
        self.consumed += 1
        batch = tuple(t.to(self.device, non_blocking=True) for t in _as_tuple(batch))
        return batch if self.transform is None else _as_tuple(self.transform(batch, self.aug))

    def batches_per_epoch(self) -> int:
        return self.n_batches

    def state_dict(self) -> dict:
        sd = {"epoch": self.epoch, "consumed": self.consumed, "epoch_state": self.epoch_state,
              "generator": self.generator.get_state()}
        return sd | ({"aug": self.aug.get_state()} if self.aug is not None else {})

    def load_state_dict(self, sd: dict) -> None:
        self.epoch, self.consumed = sd["epoch"], sd["consumed"]
        if self.consumed < self.n_batches:  # mid-epoch: redraw the epoch, continue at the next batch
            _restore(self.generator, sd["epoch_state"])
            self._plan_epoch(self.consumed)
        _restore(self.generator, sd["generator"])
        _restore(self.aug, sd.get("aug"))
        self.it = None


class GeneratedSource(Source):
    """Data made in code (a synthetic teacher, PDE collocation points): `fn(n, generator, device) -> tensors`,
    called for every batch with our generator, so the data are a function of the seed alone and the
    generator's state is all a resume needs."""

    def __init__(self, fn, batch_size: int):
        self.fn, self.batch_size = fn, _integer("batch_size", batch_size)
        self.batches = 0

    def next(self, **context) -> tuple:
        self.batches += 1
        return _as_tuple(self.fn(self.batch_size, self.generator, self.device))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "batches": self.batches}

    def load_state_dict(self, sd: dict) -> None:
        _restore(self.generator, sd["generator"])
        self.batches = sd["batches"]


class EnvSource(Source):
    """Episodes of a gymnasium environment (classic control runs offline on the CPU).

    Every episode is reset with a seed drawn from our stream, so the episodes depend on the run's seed alone
    (not on numpy's global RNG), and only whole episodes are collected, so no environment state crosses a call:
    the generator and the counters `episodes` and `env_steps` (the x-axis of policy-gradient papers) are all a
    resume needs. gymnasium is imported here, not with the module, as only environment runs need it."""

    def __init__(self, env_id: str, max_episode_steps: int | None = None, **env_kwargs):
        try:
            import gymnasium
        except ImportError as e:
            raise OptrunError(f"EnvSource('{env_id}'): gymnasium is not installed (pip install gymnasium)") from e
        _integer("max_episode_steps", max_episode_steps, allow_none=True)
        try:
            self.env = gymnasium.make(env_id, max_episode_steps=max_episode_steps, **env_kwargs)
        except (gymnasium.error.Error, TypeError) as e:
            raise OptrunError(f"env_id: cannot make the environment '{env_id}' ({e})") from e
        self.env_id, self.env_kwargs = env_id, env_kwargs
        self.max_episode_steps = max_episode_steps or getattr(self.env.spec, "max_episode_steps", None)
        self.discrete = isinstance(self.env.action_space, gymnasium.spaces.Discrete)
        self.episodes = self.env_steps = 0

    def rollouts(self, policy, n_episodes: int, horizon: int | None = None) -> dict:
        """Run `n_episodes` whole episodes with `policy(obs, generator) -> (action, log_prob or None)` (obs: a
        float32 tensor on the device; its random draws come from our generator). Each episode runs until it
        terminates, is truncated or reaches `horizon` steps (default: max_episode_steps).

        Returns tensors padded to the horizon T: observations (E, T, *obs), actions (E, T, *act), rewards
        (E, T), mask (E, T; the step happened), terminated (E, T; a terminal state was reached at that step, so
        nothing is bootstrapped after it), lengths (E,), returns (E,), final_observations (E, *obs; after the
        last step, for bootstrapping truncated episodes) and, if the policy gives them, log_probs (E, T) with
        their autograd graph (REINFORCE differentiates them)."""
        _integer("n_episodes", n_episodes)
        horizon = _integer("horizon", horizon or self.max_episode_steps)
        obs_shape, act_shape = self.env.observation_space.shape, () if self.discrete else self.env.action_space.shape
        e_, t_, g = n_episodes, horizon, self.generator
        obs_buf, final = np.zeros((e_, t_, *obs_shape), np.float32), np.zeros((e_, *obs_shape), np.float32)
        act = np.zeros((e_, t_, *act_shape), np.int64 if self.discrete else np.float32)
        rew, mask, term = np.zeros((e_, t_), np.float32), np.zeros((e_, t_), bool), np.zeros((e_, t_), bool)
        lengths, logps = np.zeros(e_, np.int64), []
        for e in range(e_):
            seed = int(torch.randint(SEED_HIGH, (1,), generator=g, device=g.device))
            obs, _ = self.env.reset(seed=seed)
            ep_logps = []
            for t in range(t_):
                obs_buf[e, t] = obs
                action, logp = policy(torch.as_tensor(obs_buf[e, t], device=self.device), g)
                a = int(action) if self.discrete else torch.as_tensor(action).detach().cpu().numpy().reshape(act_shape)
                obs, r, terminated, truncated, _ = self.env.step(a)
                act[e, t], rew[e, t], mask[e, t], term[e, t] = a, r, True, terminated
                if logp is not None:
                    ep_logps.append(logp.reshape(()))
                if terminated or truncated:
                    break
            final[e], lengths[e] = obs, t + 1
            logps.append(ep_logps)
            self.episodes, self.env_steps = self.episodes + 1, self.env_steps + t + 1
        to = lambda a: torch.as_tensor(a, device=self.device)
        out = {"observations": to(obs_buf), "actions": to(act), "rewards": to(rew), "mask": to(mask),
               "terminated": to(term), "lengths": to(lengths), "returns": to(rew.sum(1)),
               "final_observations": to(final)}
        if any(logps):
            out["log_probs"] = torch.stack([F.pad(torch.stack(lp), (0, t_ - len(lp))) if lp else
                                            torch.zeros(t_, device=self.device) for lp in logps]).to(self.device)
        return out

    def batch_rollouts(self, sample, n_episodes: int, horizon: int | None = None) -> dict:
        """`n_episodes` whole episodes stepped in lockstep, one policy call per time step for all of them:
        `sample(obs (E, *obs), generator) -> actions (E, *act)` (no graph; e.g. `policy.sample`). A trainer
        then scores the batch in one forward pass (`policy.log_prob(observations, actions)`), which is what
        makes a policy-gradient step cheap on the CPU.

        The episodes' reset seeds are drawn first, then the actions step by step (a finished episode's
        action is drawn and ignored, so the draws do not depend on which episodes are still running).
        Returns the dict of `rollouts` without log_probs."""
        _integer("n_episodes", n_episodes)
        horizon = _integer("horizon", horizon or self.max_episode_steps)
        envs = self._lockstep_envs(n_episodes)
        g, e_ = self.generator, n_episodes
        seeds = torch.randint(SEED_HIGH, (e_,), generator=g, device=g.device).tolist()
        obs0 = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]).astype(np.float32)
        obs_buf = np.zeros((e_, horizon, *obs0.shape[1:]), np.float32)
        final = obs0.copy()
        act_shape = () if self.discrete else self.env.action_space.shape
        act = np.zeros((e_, horizon, *act_shape), np.int64 if self.discrete else np.float32)
        rew, mask, term = np.zeros((e_, horizon), np.float32), np.zeros((e_, horizon), bool), np.zeros((e_, horizon), bool)
        lengths, alive = np.zeros(e_, np.int64), np.ones(e_, bool)
        for t in range(horizon):
            obs_buf[:, t] = final
            actions = sample(torch.as_tensor(obs_buf[:, t], device=self.device), g).detach().cpu().numpy()
            for e in np.flatnonzero(alive):
                a = int(actions[e]) if self.discrete else actions[e].reshape(act_shape)
                obs, r, terminated, truncated, _ = envs[e].step(a)
                act[e, t], rew[e, t], mask[e, t], term[e, t] = a, r, True, terminated
                final[e], lengths[e] = obs, t + 1
                if terminated or truncated:
                    alive[e] = False
            if not alive.any():
                break
        self.episodes, self.env_steps = self.episodes + e_, self.env_steps + int(lengths.sum())
        to = lambda a: torch.as_tensor(a, device=self.device)
        return {"observations": to(obs_buf), "actions": to(act), "rewards": to(rew), "mask": to(mask),
                "terminated": to(term), "lengths": to(lengths), "returns": to(rew.sum(1)), "final_observations": to(final)}

    def _lockstep_envs(self, n: int) -> list:
        """`n` copies of the environment (the first is `self.env`), made once and reused."""
        import gymnasium

        envs = getattr(self, "_envs", [self.env])
        while len(envs) < n:
            envs.append(gymnasium.make(self.env_id, max_episode_steps=self.max_episode_steps, **self.env_kwargs))
        self._envs = envs
        return envs[:n]

    def next(self, policy=None, n: int = 1, horizon: int | None = None, **context) -> dict:
        """The protocol's name for `rollouts(policy, n, horizon)`."""
        if policy is None:
            raise OptrunError(f"EnvSource('{self.env_id}').next: expected policy=(obs, generator) -> (action, log_prob)")
        return self.rollouts(policy, n, horizon)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "episodes": self.episodes, "env_steps": self.env_steps}

    def load_state_dict(self, sd: dict) -> None:
        _restore(self.generator, sd["generator"])
        self.episodes, self.env_steps = sd["episodes"], sd["env_steps"]

    def close(self) -> None:
        for env in getattr(self, "_envs", [self.env]):
            env.close()
