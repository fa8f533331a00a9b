"""StableUN (Wu, Liu, Gao, Wang, Ding, arXiv 2509.20230): unlearning that looks for a flat region of the
forget loss, against GA and NPO, followed by the relearning attack the paper defends against.

One run has three phases on the language model component `lm` (its optimizer is reset and given the
phase's learning rate at each phase start):
1. `learn`   (task 1): fine-tune on every fact (forget + retain) with cross-entropy: the model to unlearn.
2. `unlearn` (task 2): the method's updates until the forget accuracy is <= `forget_target` percent
   (checked after every step; the remaining steps of the phase change nothing), at most `unlearn_steps`.
3. `attack`  (task 3): the relearning attack: fine-tune with cross-entropy on `attack_facts` forget facts
   for `attack_steps` steps (the learn phase's optimizer and rate unless `lr_attack` is set) and measure
   exact match on the other forget facts after each step (`relearn_acc`).

The unlearning update (every method; `forget_loss` L_f is GA's -CE or NPO's
(2/beta) E log(1 + (pi/pi_ref)^beta), pi_ref the model after phase 1; L_r is CE on retain facts):
- GA / NPO (`feedback: false`): g = grad L_f(theta) + lambda grad L_r(theta).
- StableUN (`feedback: true`), the multi-point step:
      theta_tau = theta - alpha grad L_f(theta) / |grad L_f(theta)|            (look-ahead forget step)
      delta     = rho grad L_f(theta_tau) / |.|   (SAP: the direction that undoes the unlearning most)
                | rho z / |z|, z ~ N(0, I)         (GPN: Gaussian parameter noise on the rho-sphere)
      g_f       = grad L_f(theta_tau + delta)                                 (forgetting feedback)
      g_r       = grad L_r(theta_tau)                                         (remembering feedback)
      g_f      <- g_f - (g_f . g_r / |g_r|^2) g_r   if g_f . g_r < 0 and `project`  (gradient projection)
      g         = g_f + lambda g_r, applied at theta by the component's optimizer.
Logged: cos(g_f, g_r) before projection, whether it projected, |delta|, cumulative gradient calls.

At the start of the attack the sharpness of the forget cross-entropy at the unlearned solution is
measured: the largest drop of CE_forget within the ball |delta| <= `sharp_rho`, by `sharp_steps` steps
of projected normalised gradient descent (`sharpness`; a lower bound on the true maximum).
Every random choice (facts, forget subjects, attack subset, GPN noise, mini-batches) comes from the
run's streams; the attack subset depends on the seed only, so all methods of a seed face the same attack.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from experiments.stableun.facts import QA, answer_scores, cat_qa, load_qa_files, stand_in_qa, synthetic_facts
from runner.errors import OptrunError
from runner.trainers.base import Phase, StepTrainer, TrainState

FORGET_LOSSES = ("ga", "npo")
PERTURBATIONS = ("sap", "gpn")


def dot(a: list, b: list) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def norm(a: list) -> torch.Tensor:
    return dot(a, a).sqrt()


class UnlearnTrainer(StepTrainer):
    """Learn -> unlearn (GA, NPO or StableUN) -> relearning attack; see the module docstring."""

    def __init__(self, forget_loss: str = "npo", feedback: bool = False, perturbation: str = "sap",
                 project: bool = True, alpha: float = 0.1, rho: float = 0.1, retain_weight: float = 1.0,
                 npo_beta: float = 0.1, learn_steps: int = 300, lr_learn: float = 1e-2, unlearn_steps: int = 300,
                 lr_unlearn: float = 1e-3, forget_target: float = 5.0, attack_facts: int = 10,
                 attack_steps: int = 20, lr_attack: float | None = None, sharp_rho: float | None = None,
                 sharp_steps: int = 10, data: str = "synthetic", subjects: int = 60, relations: int = 5,
                 objects: int = 40, forget_subjects: int = 8, types: int = 10, data_dir: str | None = None,
                 tokenizer_path: str | None = None, max_len: int = 128, stand_in: bool = False,
                 stand_in_shape: tuple = (40, 200, 32, 4), batch_size: int | None = None,
                 diverge_above: float = 1e6):
        if forget_loss not in FORGET_LOSSES:
            raise OptrunError(f"trainer.forget_loss: unknown '{forget_loss}' (expected one of: {', '.join(FORGET_LOSSES)})")
        if perturbation not in PERTURBATIONS:
            raise OptrunError(f"trainer.perturbation: unknown '{perturbation}' (expected one of: {', '.join(PERTURBATIONS)})")
        if data not in ("synthetic", "files"):
            raise OptrunError(f"trainer.data: unknown '{data}' (expected synthetic or files)")
        if min(learn_steps, unlearn_steps, attack_steps, attack_facts) <= 0 or min(lr_learn, lr_unlearn) <= 0:
            raise OptrunError("trainer: step counts, attack_facts and learning rates must be positive")
        if alpha < 0 or rho < 0 or retain_weight < 0 or npo_beta <= 0:
            raise OptrunError("trainer: expected alpha, rho, retain_weight >= 0 and npo_beta > 0")
        self.forget_loss, self.feedback, self.perturbation, self.project = forget_loss, feedback, perturbation, project
        self.alpha, self.rho, self.lam, self.beta = alpha, rho, retain_weight, npo_beta
        self.learn_steps, self.unlearn_steps, self.attack_steps = learn_steps, unlearn_steps, attack_steps
        self.lr = {"learn": lr_learn, "unlearn": lr_unlearn, "attack": lr_attack or lr_learn}
        self.forget_target, self.attack_facts = forget_target, attack_facts
        self.sharp_rho, self.sharp_steps = (rho if sharp_rho is None else sharp_rho), sharp_steps
        self.data_kind, self.facts, self.types = data, (subjects, relations, objects, forget_subjects), types
        self.data_dir, self.tokenizer_path, self.max_len = data_dir, tokenizer_path, max_len
        self.stand_in, self.stand_in_shape, self.batch_size = stand_in, tuple(stand_in_shape), batch_size
        self.diverge_above = diverge_above
        # run state (checkpointed)
        self.ref_logp = self.attack_idx = self.sharpness = None
        self.done_at, self.grad_calls = None, 0
        self._retain_ce_at = None  # (parameter versions, CE_r over all retain facts there): see unlearn_step

    # -- setup
    def phases(self, state: TrainState) -> list[Phase]:
        if "lm" not in state.optimizers:
            raise OptrunError("components.lm: this trainer needs a language model `lm` with an optimizer")
        self.model = state.modules["lm"]
        self.opt = state.optimizers["lm"]
        g = state.generators["data"]
        vocab = self.model.vocab_size
        if self.data_kind == "synthetic":
            self.forget, self.retain, need = synthetic_facts(*self.facts, generator=g, n_types=self.types)
            if need > vocab:
                raise OptrunError(f"components.lm: the toy needs a vocabulary of {need} tokens, the model has {vocab}")
        elif self.stand_in:
            nf, nr, length, ans = self.stand_in_shape
            self.forget, self.retain = (stand_in_qa(n, length, ans, vocab, g) for n in (nf, nr))
        else:
            from runner.models.hf import load_tokenizer

            self.forget, self.retain = load_qa_files(self.data_dir, load_tokenizer(self.tokenizer_path), self.max_len)
        if len(self.forget) <= self.attack_facts:
            raise OptrunError(f"trainer.attack_facts: {self.attack_facts} leaves no forget fact to measure "
                              f"({len(self.forget)} forget facts)")
        self.forget, self.retain = self.forget.to(state.device), self.retain.to(state.device)
        self.everything = cat_qa(self.forget, self.retain)
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.batch_stream, self.noise_stream = state.stream("trainer.batch"), state.stream("trainer.noise")
        return [Phase(self.learn_steps, task=1, name="learn"), Phase(self.unlearn_steps, task=2, name="unlearn"),
                Phase(self.attack_steps, task=3, name="attack")]

    def columns(self, state: TrainState) -> list[str]:
        return ["loss", "train_acc", "forget_acc", "forget_ce", "retain_acc", "retain_ce", "forget_loss",
                "cos_fr", "projected", "delta_norm", "unlearned", "unlearn_steps_used", "grad_calls",
                "relearn_acc", "relearn_ce", "attack_acc", "sharpness", "forget_acc_unlearned",
                "retain_acc_unlearned", "param_norm", "learned_acc"]

    def begin_phase(self, state: TrainState, phase: Phase) -> None:
        self.phase = phase.name
        self.opt.state.clear()  # each phase starts its optimizer afresh (the attacker has no unlearning moments)
        for group in self.opt.param_groups:
            group["lr"] = self.lr[phase.name]
        if phase.name == "unlearn" and self.ref_logp is None:
            with torch.no_grad():
                self.ref_logp = self.scores(None, self.forget)[0]
                self.learned_acc = float(self.scores(None, self.everything)[2].float().mean() * 100)
        if phase.name == "attack" and self.attack_idx is None:
            perm = torch.randperm(len(self.forget), generator=state.stream("trainer.attack"),
                                  device=state.stream("trainer.attack").device).to(state.device)
            self.attack_idx = perm[:self.attack_facts]
            self.sharpness = float(self.forget_sharpness())
            ev = self.evaluate()
            self.before_attack = {"forget_acc_unlearned": ev["forget_acc"], "retain_acc_unlearned": ev["retain_acc"]}
        if phase.name == "attack":
            self.held_idx = self._held()

    def _held(self) -> torch.Tensor:
        keep = torch.ones(len(self.forget), dtype=torch.bool, device=self.attack_idx.device)
        keep[self.attack_idx] = False
        return keep.nonzero().squeeze(1)

    # -- the pieces
    def params(self) -> dict:
        return {n: p for n, p in self.model.named_parameters() if n in self.names}

    def scores(self, params: dict | None, qa: QA):
        """Answer scores of `qa` under `params`; None: the model's own parameters, called directly
        (the same numbers without functional_call's parameter swap, ~1 ms a call)."""
        x = qa.tokens[:, :-1]
        return answer_scores(self.model(x) if params is None else functional_call(self.model, params, (x,)), qa)

    def ce(self, params: dict, qa: QA) -> torch.Tensor:
        return self.scores(params, qa)[1].mean()

    def unlearn_loss(self, params: dict, qa: QA, ref: torch.Tensor) -> torch.Tensor:
        """GA: -CE (ascent on the forget facts); NPO: (2/beta) mean softplus(beta (log pi - log pi_ref))."""
        logp, ce, _ = self.scores(params, qa)
        if self.forget_loss == "ga":
            return -ce.mean()
        return 2.0 / self.beta * F.softplus(self.beta * (logp - ref)).mean()

    def grad(self, fn, params: dict) -> list[torch.Tensor]:
        """grad of fn at `params` (a dict of tensors), as a list in `self.names` order."""
        return self.value_and_grad(fn, params)[1]

    def value_and_grad(self, fn, params: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(fn at `params`, detached; its grad as in `grad`): the value costs no second forward pass."""
        leaves = {n: v.detach().requires_grad_(True) for n, v in params.items()}
        self.grad_calls += 1
        value = fn(leaves)
        return value.detach(), list(torch.autograd.grad(value, [leaves[n] for n in self.names]))

    def shifted(self, params: dict, direction: list, scale: float) -> dict:
        return {n: params[n].detach() + scale * d for n, d in zip(self.names, direction)}

    def batch(self, qa: QA) -> QA:
        if not self.batch_size or self.batch_size >= len(qa):
            return qa
        idx = torch.randperm(len(qa), generator=self.batch_stream, device=self.batch_stream.device)[:self.batch_size]
        return qa.subset(idx.to(qa.tokens.device))

    @torch.no_grad()
    def evaluate(self) -> dict:
        _, fce, fhit = self.scores(None, self.forget)
        _, rce, rhit = self.scores(None, self.retain)
        self._retain_ce_at = (self._versions(), rce.mean())
        return {"forget_acc": float(fhit.float().mean() * 100), "forget_ce": float(fce.mean()),
                "retain_acc": float(rhit.float().mean() * 100), "retain_ce": float(rce.mean())}

    def _versions(self) -> tuple:
        """The parameters' in-place version counters: any optimizer step or copy into them changes it."""
        return tuple(p._version for p in self.model.parameters())

    def _retain_ce_now(self) -> torch.Tensor | None:
        """CE_r over all retain facts at the current parameters if the last `evaluate` saw these parameters."""
        if self._retain_ce_at is not None and self._retain_ce_at[0] == self._versions():
            return self._retain_ce_at[1]
        return None

    def forget_sharpness(self) -> torch.Tensor:
        """max over |delta| <= sharp_rho of CE_f(theta) - CE_f(theta + delta), by projected normalised descent."""
        theta = {n: v.detach() for n, v in self.params().items()}
        base = self.ce(theta, self.forget).detach()
        best = base
        delta = [torch.zeros_like(theta[n]) for n in self.names]
        step = 2.5 * self.sharp_rho / self.sharp_steps
        for _ in range(self.sharp_steps):
            g = self.grad(lambda p: self.ce(p, self.forget), self.shifted(theta, delta, 1.0))
            gn = norm(g).clamp(min=1e-12)
            delta = [d - step * x / gn for d, x in zip(delta, g)]
            dn = norm(delta)
            if dn > self.sharp_rho:
                delta = [d * (self.sharp_rho / dn) for d in delta]
            with torch.no_grad():
                best = torch.minimum(best, self.ce(self.shifted(theta, delta, 1.0), self.forget))
        return base - best

    def apply(self, grads: list[torch.Tensor]) -> None:
        self.opt.zero_grad(set_to_none=True)
        for p, g in zip(self.params().values(), grads):
            p.grad = g
        self.opt.step()

    def param_norm(self) -> torch.Tensor:
        return norm([p.detach() for p in self.params().values()])

    # -- the steps
    def step(self, state: TrainState) -> dict:
        return getattr(self, f"{self.phase}_step")(state)

    def fit_step(self, qa) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on the cross-entropy of `qa` (learning the facts, or the attack's fine-tuning);
        returns the loss and the per-fact hits before the step."""
        _, ce, hit = self.scores(None, qa)
        loss = ce.mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.grad_calls += 1
        return loss, hit

    def learn_step(self, state: TrainState) -> dict:
        loss, hit = self.fit_step(self.batch(self.everything))
        return {"loss": self.guarded(loss.detach(), self.param_norm()), "train_acc": float(hit.float().mean() * 100), "grad_calls": self.grad_calls}

    def unlearn_step(self, state: TrainState) -> dict:
        if self.done_at is not None:  # reached the target: the rest of the phase changes nothing
            self.idle_eval = getattr(self, "idle_eval", None) or self.evaluate()  # the model no longer moves
            return {"loss": torch.tensor(0.0), "unlearned": 1.0, "learned_acc": self.learned_acc,
                    "unlearn_steps_used": self.done_at, "grad_calls": self.grad_calls, **self.idle_eval}
        fidx = None
        fq = self.forget
        if self.batch_size and self.batch_size < len(fq):
            fidx = torch.randperm(len(fq), generator=self.batch_stream, device=self.batch_stream.device)[:self.batch_size]
            fq = fq.subset(fidx.to(fq.tokens.device))
        ref = self.ref_logp if fidx is None else self.ref_logp[fidx.to(self.ref_logp.device)]
        rq = self.batch(self.retain)
        Lf = lambda p: self.unlearn_loss(p, fq, ref)  # noqa: E731
        Lr = lambda p: self.ce(p, rq)  # noqa: E731
        theta = self.params()
        out = {}
        if self.feedback:
            f_theta, g0 = self.value_and_grad(Lf, theta)
            tau = self.shifted(theta, g0, -self.alpha / float(norm(g0).clamp(min=1e-12)))
            if self.perturbation == "sap":
                d = self.grad(Lf, tau)
            else:
                d = [torch.randn(x.shape, generator=self.noise_stream, device=self.noise_stream.device).to(x)
                     for x in g0]
            dn = norm(d).clamp(min=1e-12)
            delta = [self.rho * x / dn for x in d]
            gf = self.grad(Lf, self.shifted(tau, delta, 1.0))
            gr = self.grad(Lr, tau)
            out["delta_norm"] = float(norm(delta))
        else:
            (f_theta, gf), (r_theta, gr) = self.value_and_grad(Lf, theta), self.value_and_grad(Lr, theta)
        d_fr = dot(gf, gr)
        out["cos_fr"] = float(d_fr / (norm(gf) * norm(gr)).clamp(min=1e-12))
        projected = self.feedback and self.project and float(d_fr) < 0
        if projected:
            c = d_fr / dot(gr, gr).clamp(min=1e-12)
            gf = [a - c * b for a, b in zip(gf, gr)]
        out["projected"] = float(projected)
        # loss = L_f(theta) + lambda L_r(theta) at the point of the step. L_f(theta) is the value of the
        # gradient call at theta; L_r(theta) on all retain facts (full batch) is the last evaluate's
        # (the previous step's, at these very parameters), else that of the gradient call or a forward.
        full = rq is self.retain
        if self.feedback:
            r_theta = self._retain_ce_now() if full else None
            if r_theta is None:
                with torch.no_grad():
                    r_theta = Lr(theta)
        loss = f_theta + self.lam * r_theta
        self.apply([a + self.lam * b for a, b in zip(gf, gr)])
        ev = self.evaluate()
        if ev["forget_acc"] <= self.forget_target:
            self.done_at = state.step + 1 - self.learn_steps
        # forget_loss subtracts L_r at the updated parameters (the logs' definition): evaluate's CE_r on a full batch
        r_after = self._retain_ce_at[1] if full else Lr(theta).detach()
        pn = self.param_norm()
        return {"loss": self.guarded(loss, pn), "forget_loss": float(loss - self.lam * r_after),
                "learned_acc": self.learned_acc,
                "unlearned": float(self.done_at is not None), "unlearn_steps_used": self.done_at or (state.step + 1 - self.learn_steps),
                "grad_calls": self.grad_calls, "param_norm": float(pn), **out, **ev}

    def attack_step(self, state: TrainState) -> dict:
        atk, held = self.forget.subset(self.attack_idx), self.forget.subset(self.held_idx)
        loss, hit = self.fit_step(atk)
        with torch.no_grad():
            _, hce, hhit = self.scores(None, held)
        out = {"loss": self.guarded(loss.detach(), self.param_norm()), "attack_acc": float(hit.float().mean() * 100),
               "relearn_acc": float(hhit.float().mean() * 100), "relearn_ce": float(hce.mean()),
               "grad_calls": self.grad_calls, "sharpness": self.sharpness, **self.before_attack, **self.evaluate()}
        out["unlearned"] = float(self.done_at is not None)
        out["unlearn_steps_used"] = self.done_at if self.done_at is not None else self.unlearn_steps
        return out

    # -- resume
    def state_dict(self) -> dict:
        return {"ref_logp": self.ref_logp, "learned_acc": getattr(self, "learned_acc", None), "attack_idx": self.attack_idx, "sharpness": self.sharpness,
                "done_at": self.done_at, "grad_calls": self.grad_calls,
                "before_attack": getattr(self, "before_attack", None)}

    def load_state_dict(self, sd: dict) -> None:
        self.ref_logp, self.attack_idx, self.sharpness = sd.get("ref_logp"), sd.get("attack_idx"), sd.get("sharpness")
        self.done_at, self.grad_calls = sd.get("done_at"), sd.get("grad_calls", 0)
        self.learned_acc = sd.get("learned_acc")
        if sd.get("before_attack") is not None:
            self.before_attack = sd["before_attack"]
