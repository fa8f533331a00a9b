"""Environment sources of the paper-scale runs. MuJoCo tasks need gymnasium's `mujoco` extra (the
`rl-mujoco` extra of this project), which a CPU check may lack: `make_source(..., stand_in=True)` gives
a padded Pendulum-v1 of the task's observation and action shapes instead, so the paper's policy and
trainer step on the CPU without MuJoCo (what the stand-in cannot test: the MuJoCo dynamics themselves)."""
from __future__ import annotations

import gymnasium
import numpy as np

from runner.data.sources import EnvSource

STAND_IN = "experiments.pg_fisher.envs:PaddedPendulum-v0"  # gymnasium imports this module, which registers it


class PaddedPendulum(gymnasium.Env):
    """Pendulum-v1 seen through `obs_dim` observations (its 3, then zeros) and `act_dim` actions (the first
    is the torque; the others are ignored)."""

    def __init__(self, obs_dim: int = 3, act_dim: int = 1, max_episode_steps: int = 200):
        self.inner = gymnasium.make("Pendulum-v1", max_episode_steps=max_episode_steps)
        self.obs_dim, self.act_dim = max(obs_dim, 3), max(act_dim, 1)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        self.action_space = gymnasium.spaces.Box(-2.0, 2.0, (self.act_dim,), np.float32)

    def _pad(self, obs):
        return np.concatenate([obs, np.zeros(self.obs_dim - 3)]).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        obs, info = self.inner.reset(seed=seed, options=options)
        return self._pad(obs), info

    def step(self, action):
        obs, r, terminated, truncated, info = self.inner.step(np.asarray(action, np.float32).reshape(-1)[:1])
        return self._pad(obs), r, terminated, truncated, info

    def close(self):
        self.inner.close()


if "PaddedPendulum-v0" not in gymnasium.registry:
    gymnasium.register("PaddedPendulum-v0", entry_point=PaddedPendulum)


def make_source(env_id: str, max_episode_steps: int | None = None, stand_in: bool = False,
                obs_dim: int | None = None, act_dim: int | None = None) -> EnvSource:
    """The environment `env_id`, or (stand_in) the padded Pendulum with the shapes of `obs_dim`/`act_dim`
    (read from the policy's config by the studies) and the same episode cap."""
    if not stand_in:
        return EnvSource(env_id, max_episode_steps=max_episode_steps)
    return EnvSource(STAND_IN, max_episode_steps=max_episode_steps, obs_dim=obs_dim or 3, act_dim=act_dim or 1)
