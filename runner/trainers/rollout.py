"""Trainers whose data is made by the model being trained: a step collects trajectories (episodes of an
environment, or sampled completions of prompts with a verifiable reward), computes an estimator from
them and applies the update, on the one engine.

`RolloutTrainer` is the base: the policy is component `policy` (a module with its own optimizer; a
subclass may list more in `trainer.components`), `source` is a Hydra config of the data source (e.g.
`runner.data.sources.EnvSource`, `runner.data.tasks.PromptSource`), built in `phases` and bound to the
run's stream `source`, so episodes depend on the seed alone and resume identically. `self.counts` holds
the cumulative costs that policy-gradient papers put on the x-axis (trajectories, environment steps,
sampled completions and tokens, Hessian-vector products); `self.count_metrics()` logs them, the
checkpoint carries them with the source's state.

`PolicyGradient` is the vanilla estimator on an environment, GPOMDP (Baxter & Bartlett 2001): each
log-probability is weighted by the discounted reward that follows it,

    grad J = 1/E sum_e sum_t grad log pi(a_t | s_t) sum_{t' >= t} gamma^{t'} r_{t'},

and the policy's optimizer ascends it (the trainer hands it the negated gradient). Papers' own
estimators (normalized momentum, look-ahead points, Hessian corrections, GRPO) subclass the base.
"""
from __future__ import annotations

import torch
from hydra.utils import instantiate

from runner.errors import OptrunError
from runner.trainers.base import Phase, StepTrainer, TrainState


def discounted_rewards_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """(E, T) -> (E, T): sum_{t' >= t} gamma^{t'} r_{t'} (discounted from the episode's start, as GPOMDP
    weighs them); steps past an episode's end (mask False) count zero."""
    t = torch.arange(rewards.shape[-1], device=rewards.device, dtype=rewards.dtype)
    weighted = rewards * mask * gamma ** t
    return weighted.flip(-1).cumsum(-1).flip(-1)


def gpomdp_surrogate(log_probs: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """A scalar whose gradient is the GPOMDP estimate of grad J (mean over the E episodes)."""
    weights = discounted_rewards_to_go(rewards, mask, gamma).detach()
    return (log_probs * weights * mask).sum(-1).mean()


def flat_grad(output: torch.Tensor, params: list[torch.Tensor], create_graph: bool = False) -> torch.Tensor:
    """d output / d params as one flat vector (zeros for parameters the output does not reach)."""
    grads = torch.autograd.grad(output, params, create_graph=create_graph, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


class RolloutTrainer(StepTrainer):
    """The base of rollout trainers (see the module docstring). A subclass implements `step(state)` and
    may override `setup(state)` (called once the source is ready) and `extra_state`/`load_extra_state`.
    Divergence is data: return `loss = self.guarded(loss, *tensors)` (StepTrainer).

    `counted` names the costs logged from the first step (`count(name)` adds any other, e.g. `samples`,
    `tokens`, `hvp_calls`, `forward_passes`)."""

    counted: tuple[str, ...] = ("trajectories", "env_steps")

    def __init__(self, steps: int = 100, source: dict | None = None, diverge_above: float = 1e6):
        if not isinstance(steps, int) or steps <= 0:
            raise OptrunError(f"trainer.steps: expected a positive integer, got {steps!r}")
        if not diverge_above > 0:
            raise OptrunError(f"trainer.diverge_above: expected a positive number, got {diverge_above}")
        if source is not None and not hasattr(source, "setup") and not (isinstance(source, dict) and "_target_" in source):
            raise OptrunError(f"trainer.source: expected a data source or a mapping with _target_ (e.g. "
                              f"runner.data.sources.EnvSource), got {source!r}")
        # Hydra builds a nested _target_ with the trainer; a mapping (a test, _recursive_: false) is built in phases
        self.source_cfg, self.source = (source, None) if isinstance(source, dict) else (None, source)
        self.steps, self.diverge_above = steps, diverge_above
        self._bound = False
        self.counts = dict.fromkeys(self.counted, 0)

    # -- the pieces a subclass uses
    def count(self, name: str, k: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + int(k)

    def count_metrics(self) -> dict:
        return dict(self.counts)

    def policy_params(self, state: TrainState, name: str = "policy") -> list[torch.Tensor]:
        return [p for p in state.modules[name].parameters() if p.requires_grad]

    # -- the engine's protocol
    def phases(self, state: TrainState) -> list[Phase]:
        if "policy" not in state.modules:
            raise OptrunError("components.policy: a rollout trainer needs a module (and an optimizer) named 'policy'")
        if self.source_cfg is not None and self.source is None:
            try:
                self.source = instantiate(self.source_cfg, _convert_="all")
            except Exception as e:  # noqa: BLE001 -- name the key, keep the cause
                cause = e.__cause__ if isinstance(e.__cause__, OptrunError) else e
                raise OptrunError(f"trainer.source: cannot build it ({str(cause).strip().splitlines()[0]})") from e
        if self.source is not None and not self._bound:
            self.source.setup(state.stream("source"), state.device)
            self._bound = True
        self.setup(state)
        return [Phase(steps=self.steps, name="rollout")]

    def setup(self, state: TrainState) -> None:
        pass

    def state_dict(self) -> dict:
        sd = {"counts": dict(self.counts), **self.extra_state()}
        if self.source is not None:
            sd["source"] = self.source.state_dict()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        self.counts.update(sd.get("counts", {}))
        if self.source is not None and "source" in sd:
            self.source.load_state_dict(sd["source"])
        self.load_extra_state(sd)


class PolicyGradient(RolloutTrainer):
    """Vanilla policy gradient (GPOMDP) on an environment source: `episodes` trajectories per step, capped
    at `horizon` steps, discount `gamma`; the policy's optimizer takes the ascent step. Logged: `loss` =
    minus the mean undiscounted return of the step's episodes, `return`, `episode_length`, `entropy` (mean
    over visited states), `grad_norm`, and the counts."""

    def __init__(self, steps: int = 100, source: dict | None = None, episodes: int = 5, gamma: float = 0.99,
                 horizon: int | None = None, diverge_above: float = 1e6):
        super().__init__(steps, source, diverge_above)
        if not isinstance(episodes, int) or episodes <= 0:
            raise OptrunError(f"trainer.episodes: expected a positive integer, got {episodes!r}")
        if not 0 < gamma <= 1:
            raise OptrunError(f"trainer.gamma: expected 0 < gamma <= 1, got {gamma}")
        self.episodes, self.gamma, self.horizon = episodes, gamma, horizon

    def setup(self, state: TrainState) -> None:
        if self.source is None or not hasattr(self.source, "batch_rollouts"):
            raise OptrunError("trainer.source: PolicyGradient needs an environment source (runner.data.sources.EnvSource)")

    def collect(self, policy) -> dict:
        """One batch of episodes from the current policy, with its costs counted."""
        batch = self.source.batch_rollouts(policy.sample, self.episodes, self.horizon)
        self.count("trajectories", self.episodes)
        self.count("env_steps", int(batch["lengths"].sum()))
        return batch

    def step(self, state: TrainState) -> dict:
        policy, opt = state.modules["policy"], state.optimizers["policy"]
        batch = self.collect(policy)
        obs, mask = batch["observations"], batch["mask"]
        logp = policy.log_prob(obs, batch["actions"])
        surrogate = gpomdp_surrogate(logp, batch["rewards"], mask, self.gamma)
        opt.zero_grad(set_to_none=True)
        (-surrogate).backward()
        params = self.policy_params(state)
        grad_norm = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None]).norm()
        opt.step()
        if "policy" in state.schedulers:
            state.schedulers["policy"].step()
        with torch.no_grad():
            entropy = (policy.entropy(obs) * mask).sum() / mask.sum()
        ret = batch["returns"].mean()
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        return {"loss": self.guarded(-ret, flat), "return": ret, "episode_length": batch["lengths"].float().mean(),
                "entropy": entropy, "grad_norm": grad_norm, **self.count_metrics()}
