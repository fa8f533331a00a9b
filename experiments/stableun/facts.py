"""The data of an unlearning run: question/answer pairs as padded token rows, split into a forget set
and a retain set, and the teacher-forced answer scores every phase uses.

A set is `QA(tokens, answer_mask)`: tokens (N, L) right-padded, and answer_mask (N, L - 1) marking the
positions t whose next token tokens[t + 1] is an answer token. The model's logits at those positions
are scored: the summed log-probability of the answer (NPO's ratio), its mean cross-entropy (the learn,
retain and attack losses) and exact match (every answer token is the argmax), the accuracy we report.

Two sources:
- `synthetic_facts`: the smoke toy. Subjects s_1..s_S and relations r_1..r_R (shared by every subject)
  form prompts "s r". Each subject has a hidden type (K types); the object of (s, r) is table[type(s), r]
  (the relation maps types to objects the same way for every subject). The forget set is every fact
  of F subjects (F x R facts: whole subject profiles, as a privacy request would ask), the retain set
  all facts of the others, which hold every type. Knowing a fact = knowing the subject's type (memorised
  per subject) and the shared table (learned from everyone); unlearning a subject must cut its type
  link without breaking the table, and a relearning attack on one fact of a subject can restore the
  link and with it the subject's other facts: the transfer the relearning attacks of the paper exploit.
  With K = 0 each (s, r) has its own random object instead (memorisation only).
- `read_qa` + `encode_qa`: the paper scale, JSON-lines files `forget.jsonl` and `retain.jsonl` under
  `data_dir` (one {"question": ..., "answer": ...} per line), tokenised by the model's own tokenizer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from runner.errors import OptrunError


@dataclass
class QA:
    tokens: torch.Tensor  # (N, L) long
    answer_mask: torch.Tensor  # (N, L - 1) bool

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def subset(self, idx: torch.Tensor) -> QA:
        return QA(self.tokens[idx], self.answer_mask[idx])

    def to(self, device) -> QA:
        return QA(self.tokens.to(device), self.answer_mask.to(device))


def cat_qa(a: QA, b: QA) -> QA:
    """Two sets as one, the shorter rows right-padded (padding is never scored)."""
    L = max(a.tokens.shape[1], b.tokens.shape[1])

    def pad(q: QA) -> QA:
        extra = L - q.tokens.shape[1]
        return QA(torch.nn.functional.pad(q.tokens, (0, extra)), torch.nn.functional.pad(q.answer_mask, (0, extra)))

    a, b = pad(a), pad(b)
    return QA(torch.cat([a.tokens, b.tokens]), torch.cat([a.answer_mask, b.answer_mask]))


def answer_scores(logits: torch.Tensor, qa: QA) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From logits (N, L - 1, V) of model(tokens[:, :-1]): per example the summed answer log-probability,
    the mean answer cross-entropy and exact match (bool)."""
    targets = qa.tokens[:, 1:]
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mask = qa.answer_mask.float()
    n = mask.sum(1).clamp(min=1)
    summed = (logp * mask).sum(1)
    hit = ((logits.argmax(-1) == targets) | ~qa.answer_mask).all(1)
    return summed, -summed / n, hit


def synthetic_facts(n_subjects: int, n_relations: int, n_objects: int, n_forget_subjects: int,
                    generator: torch.Generator, n_types: int = 0) -> tuple[QA, QA, int]:
    """The toy's facts (module docstring): returns (forget, retain, vocabulary size). Token ids:
    subjects 0..S-1, relations S..S+R-1, objects S+R..S+R+O-1; a row is [s, r, o].

    n_types = 0: every (s, r) has its own uniformly drawn object (memorisation only). n_types = K > 0:
    each subject has one of K types (balanced, in random order) and its object for relation r is
    table[type, r], with table[:, r] K distinct objects: a subject's facts share its type, so one fact
    of a subject identifies the others, and relations map types to objects for every subject alike."""
    if not 0 < n_forget_subjects < n_subjects or min(n_relations, n_objects) <= 0 or not 0 <= n_types <= n_objects:
        raise OptrunError("trainer: need 0 < forget_subjects < subjects, positive relations and objects, "
                          "0 <= types <= objects")
    dev = generator.device
    s = torch.arange(n_subjects).repeat_interleave(n_relations)
    r = torch.arange(n_relations).repeat(n_subjects)
    if n_types:
        table = torch.stack([torch.randperm(n_objects, generator=generator, device=dev).cpu()[:n_types]
                             for _ in range(n_relations)], dim=1)  # (K, R)
        kind = torch.randperm(n_subjects, generator=generator, device=dev).cpu() % n_types
        o = table[kind[s], r]
    else:
        o = torch.randint(n_objects, (len(s),), generator=generator, device=dev).cpu()
    tokens = torch.stack([s, n_subjects + r, n_subjects + n_relations + o], dim=1)
    mask = torch.tensor([[False, True]]).expand(len(s), 2)
    forget_subj = torch.randperm(n_subjects, generator=generator, device=dev).cpu()[:n_forget_subjects]
    is_forget = torch.isin(s, forget_subj)
    data = QA(tokens, mask)
    return data.subset(is_forget), data.subset(~is_forget), n_subjects + n_relations + n_objects


def read_qa(path: Path) -> list[tuple[str, str]]:
    """(question, answer) pairs from a JSON-lines file."""
    if not path.is_file():
        raise OptrunError(f"trainer.data_dir: expected {path.name} (JSON lines with question, answer) in {path.parent}")
    pairs = []
    for i, line in enumerate(path.read_text().splitlines()):
        if line.strip():
            row = json.loads(line)
            if "question" not in row or "answer" not in row:
                raise OptrunError(f"{path}:{i + 1}: expected keys question and answer")
            pairs.append((str(row["question"]), str(row["answer"])))
    if not pairs:
        raise OptrunError(f"{path}: no question/answer pairs")
    return pairs


def encode_qa(pairs: list[tuple[str, str]], tokenizer, max_len: int = 128) -> QA:
    """Token rows [question tokens, answer tokens] (truncated to max_len, answer kept first), right-padded."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    rows, masks = [], []
    for q, a in pairs:
        qi = tokenizer(q, add_special_tokens=True)["input_ids"]
        ai = tokenizer(" " + a, add_special_tokens=False)["input_ids"][: max_len - 1]
        qi = qi[-(max_len - len(ai)):] if len(qi) + len(ai) > max_len else qi
        if not qi or not ai:
            raise OptrunError(f"encode_qa: empty question or answer after tokenising: {q!r} / {a!r}")
        rows.append(qi + ai)
        masks.append([False] * (len(qi) - 1) + [True] * len(ai))
    L = max(map(len, rows))
    tokens = torch.full((len(rows), L), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), L - 1, dtype=torch.bool)
    for i, (row, m) in enumerate(zip(rows, masks)):
        tokens[i, :len(row)] = torch.tensor(row)
        mask[i, :len(m)] = torch.tensor(m)
    return QA(tokens, mask)


def load_qa_files(data_dir: str, tokenizer, max_len: int = 128) -> tuple[QA, QA]:
    """The paper scale's forget and retain sets from data_dir/{forget,retain}.jsonl."""
    root = Path(data_dir or "")
    return (encode_qa(read_qa(root / "forget.jsonl"), tokenizer, max_len),
            encode_qa(read_qa(root / "retain.jsonl"), tokenizer, max_len))


def stand_in_qa(n: int, length: int, answer_len: int, vocab: int, generator: torch.Generator) -> QA:
    """Random token rows of the paper data's shape (the CPU check that a paper-scale arm steps)."""
    tokens = torch.randint(vocab, (n, length), generator=generator, device=generator.device).cpu()
    mask = torch.zeros(n, length - 1, dtype=torch.bool)
    mask[:, -answer_len:] = True
    return QA(tokens, mask)
