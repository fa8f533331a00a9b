"""A synthetic bigram language: Zipf unigram, deterministic and high-entropy transition rows.

Everything is generated from the seed. Tokens are ranked by unigram frequency (token 0 is the most
frequent, p(x) ~ 1/(x+1)^zipf). Even rows of the transition matrix are near-deterministic
(Dirichlet(alpha_det)), odd rows high-entropy (Dirichlet(alpha_hi)), so the loss has directions that
are learned fast and sharply (deterministic rows) and directions dominated by noise (high-entropy
rows). The Bayes-optimal loss (the entropy floor) is known exactly, so `population_metrics` reports
the excess loss of a model over it, split by row type.

`seq_len=1`: samples are (previous token, next token) pairs, x and y of shape (N,).
`seq_len=L`: sequences of the Markov chain (first token from the unigram), x, y of shape (N, L).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from runner import seeding
from runner.data import Dataset
from runner.errors import OptrunError


@dataclass
class BigramData(Dataset):
    transition: torch.Tensor | None = None  # (V, V), row x = P(next | x)
    unigram: torch.Tensor | None = None  # (V,)
    deterministic: torch.Tensor | None = None  # (V,) bool, the near-deterministic rows
    seq_len: int = 1

    @property
    def row_entropy(self) -> torch.Tensor:
        p = self.transition
        return -(p * torch.log(p.clamp_min(1e-30))).sum(-1)

    @property
    def entropy_floor(self) -> float:
        """Expected next-token entropy under the unigram of the previous token (pairs)."""
        return float((self.unigram * self.row_entropy).sum())

    def to(self, device) -> "BigramData":
        keys = ("x_train", "y_train", "x_test", "y_test", "transition", "unigram", "deterministic")
        return replace(self, **{k: getattr(self, k).to(device) for k in keys})

    @torch.no_grad()
    def population_metrics(self, model: torch.nn.Module) -> dict[str, float]:
        """Population loss, excess loss over the entropy floor, and excess by row type.

        Exact for pairs (one forward pass over all V tokens); for sequences, averaged over the test
        sequences, with the floor H(P(. | previous token)) taken at the same positions."""
        V = self.n_classes
        if self.seq_len == 1:
            tokens = torch.arange(V, device=self.transition.device)
            logq = F.log_softmax(model(tokens).double(), dim=-1)
            ce = -(self.transition * logq).sum(-1)
            weight = self.unigram
        else:  # chunks of sequences keep the (chunk, L, V) tensors small
            ce = torch.cat([-(self.transition[x] * F.log_softmax(model(x).double(), dim=-1)).sum(-1).reshape(-1)
                            for x in self.x_test.split(max(1, 2**20 // (self.seq_len * V)))])
            tokens = self.x_test.reshape(-1)
            weight = torch.full_like(ce, 1.0 / ce.numel())
        excess_rows = ce - self.row_entropy[tokens]
        det = self.deterministic[tokens]
        out = {"pop_loss": float((weight * ce).sum()), "excess_loss": float((weight * excess_rows).sum())}
        for name, mask in (("det", det), ("hi", ~det)):
            w = weight * mask
            out[f"excess_{name}"] = float((w * excess_rows).sum() / w.sum())
        return out


def _sample_next(flat: np.ndarray, V: int, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Next tokens for current tokens x by one binary search in `flat`, the row CDFs shifted so that
    row r lies in [r, r + 1] (one sorted array)."""
    pos = np.searchsorted(flat, x + rng.random(x.shape), side="right")
    return np.clip(pos - x * V, 0, V - 1)


def zipf_bigram(seed: int = 0, vocab: int = 128, zipf: float = 1.1, alpha_det: float = 0.05, alpha_hi: float = 2.0,
                n_train: int = 300_000, n_test: int = 10_000, seq_len: int = 1, **_) -> BigramData:
    """Generate the language and `n_train` / `n_test` samples from it (see the module docstring)."""
    if vocab < 2 or min(n_train, n_test, seq_len) < 1:
        raise OptrunError("dataset: vocab >= 2 and positive n_train, n_test, seq_len expected")
    if min(zipf, alpha_det, alpha_hi) <= 0:
        raise OptrunError("dataset: zipf, alpha_det and alpha_hi must be positive")
    rng = np.random.default_rng(seeding.stream_seed(seed, "data"))
    unigram = 1.0 / np.arange(1, vocab + 1) ** zipf
    unigram /= unigram.sum()
    deterministic = np.arange(vocab) % 2 == 0
    alphas = np.where(deterministic, alpha_det, alpha_hi)
    transition = np.stack([rng.dirichlet(np.full(vocab, a)) for a in alphas])
    transition = np.maximum(transition, 1e-12)
    transition /= transition.sum(1, keepdims=True)
    flat = (transition.cumsum(1) + np.arange(vocab)[:, None]).ravel()

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        seq = np.empty((n, seq_len + 1), dtype=np.int64)
        seq[:, 0] = rng.choice(vocab, size=n, p=unigram)
        for t in range(seq_len):
            seq[:, t + 1] = _sample_next(flat, vocab, seq[:, t], rng)
        x, y = seq[:, :-1], seq[:, 1:]
        return (x[:, 0], y[:, 0]) if seq_len == 1 else (x, y)

    (xtr, ytr), (xte, yte) = draw(n_train), draw(n_test)
    t = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    return BigramData(t(xtr), t(ytr), t(xte), t(yte), n_classes=vocab, name="zipf_bigram",
                      classes=tuple(range(vocab)), transition=torch.as_tensor(transition, dtype=torch.float64),
                      unigram=torch.as_tensor(unigram, dtype=torch.float64),
                      deterministic=torch.as_tensor(deterministic), seq_len=seq_len)
