"""Claims of the stability-gap paper, measured on one run's `metrics.csv`.

The paper shows the stability gap in figures (Fig. 2) and gives no number we could verify (see this
folder's README.md). Each headline therefore states the paper's qualitative claim in its `paper` text,
says that no paper number is available, and tests it with a margin of ours (from a separate numpy
prototype of the smoke setting, not from the runs the claims read; ER, Split-digits P1-P6,
Rotated-digits R1-R4); every run a claim applies to must pass it. Claims select runs by the studies and arms of `studies.yaml`.
"min A1" is the minimum of task-1 accuracy over the first `DIP_WINDOW` iterations of task 2.
Every measurement reads the `continual_eval` hook's columns (`continual_eval/acc_task<k>`, ...).
"""
from __future__ import annotations

import pandas as pd

from runner.claims import Claim

DIP_WINDOW = 20
HOOK = "continual_eval"  # the hook whose metrics the claims read (columns `continual_eval/<name>`)


def col(name: str) -> str:
    """The logged column of continual-evaluation metric `name` (acc_task1, min_acc, wc_acc, ...)."""
    return f"{HOOK}/{name}"


def task_ends(df: pd.DataFrame) -> list[int]:
    """t_1..t_T: the last logged step of each task."""
    return df[df.step > 0].groupby("task").step.max().sort_index().tolist()


def curve(df: pd.DataFrame, k: int = 1) -> pd.Series:
    return df.set_index("step")[col(f"acc_task{k}")]


def a1_end(df, k: int) -> float:
    """Task-1 accuracy at the end of task k."""
    return float(curve(df)[task_ends(df)[k - 1]])


def dip_min(df) -> float:
    t1 = task_ends(df)[0]
    return float(curve(df).loc[t1 + 1: t1 + DIP_WINDOW].min())


def min_acc_task_ends(df) -> float:
    """min-ACC when only task ends are evaluated: mean over k < T of min_{j > k} A_k(t_j)."""
    ends = task_ends(df)
    rows = df.set_index("step").loc[ends]
    mins = [rows[col(f"acc_task{k}")].iloc[k:].min() for k in range(1, len(ends))]
    return float(sum(mins) / len(mins))


def final(df, name: str) -> float:
    """The last logged value of continual-evaluation metric `name`."""
    return float(df[col(name)].dropna().iloc[-1])


SPLIT = ("split_digits", "split_mnist")  # class-incremental studies (smoke, paper)
ROTATED = "rotated_digits"                # domain-incremental study (smoke)


NO_NUMBER = "no number in the paper verified; the margin is ours"
PAPER_GAP = f"Fig. 2a-c: ER's first-task accuracy (Split-MNIST among them) drops sharply when task 2 starts ({NO_NUMBER})"
PAPER_RECOVERS = ("Fig. 2a-c: the drop is temporary; first-task accuracy recovers by the next task end "
                  f"({NO_NUMBER})")
PAPER_HIDDEN = ("Fig. 2: task-end evaluation (red diamonds) misses the dips that per-iteration evaluation "
                f"and its min-ACC line show ({NO_NUMBER})")
PAPER_DOMAIN = ("Fig. 2d: the gap also appears in domain-incremental learning (Mini-DomainNet there, "
                f"Rotated-digits here; {NO_NUMBER})")
PAPER_DOMAIN_RECOVERS = f"Fig. 2d: the domain-incremental drop is temporary too ({NO_NUMBER})"

CLAIMS = [
    # Split-digits, ER
    Claim("P1 task-1 learned", "task 1 is learned before the switch", "A1(t1) >= 95",
          lambda df, c: a1_end(df, 1), lambda v: v >= 95, kind="supporting", study=SPLIT, arms="er"),
    Claim("P2 gap depth", PAPER_GAP, f"A1(t1) - min A1 (first {DIP_WINDOW} its of task 2) >= 40 (our margin)",
          lambda df, c: a1_end(df, 1) - dip_min(df), lambda v: v >= 40, kind="headline", study=SPLIT, arms="er"),
    Claim("P3a recovers level", PAPER_RECOVERS,
          "A1(t2) - A1(t1) >= -5 (our margin)", lambda df, c: a1_end(df, 2) - a1_end(df, 1), lambda v: v >= -5, kind="headline", study=SPLIT, arms="er"),
    Claim("P3b recovers height", PAPER_RECOVERS,
          "A1(t2) - min A1 >= 40 (our margin)", lambda df, c: a1_end(df, 2) - dip_min(df), lambda v: v >= 40, kind="headline", study=SPLIT,
          arms="er"),
    # min-ACC over every iteration can never exceed min-ACC over task ends only (a minimum over more
    # evaluations): a difference >= 0 holds by construction, so the claim's content is its margin.
    Claim("P4 min-ACC hidden at task ends", PAPER_HIDDEN,
          "min-ACC(task ends) - min-ACC(every iteration) >= 30 (our margin; >= 0 by construction)",
          lambda df, c: min_acc_task_ends(df) - final(df, "min_acc"), lambda v: v >= 30, kind="headline", study=SPLIT, arms="er"),
    # WC-ACC mixes the current task's accuracy with min-ACC, which bounds every earlier task's current
    # accuracy: WC-ACC <= ACC by construction. min-ACC <= WC-ACC needs the current task learned.
    Claim("P6a WC-ACC <= ACC", "worst-case accuracy bounds the average from below", "ACC - WC-ACC >= 0",
          lambda df, c: final(df, "acc") - final(df, "wc_acc"), lambda v: v >= 0, kind="check", study=SPLIT, arms="er"),
    Claim("P6c min-ACC <= WC-ACC", "the current task is learned beyond the worst earlier one", "WC-ACC - min-ACC >= 0",
          lambda df, c: final(df, "wc_acc") - final(df, "min_acc"), lambda v: v >= 0, kind="supporting", study=SPLIT,
          arms="er"),
    Claim("P6b WF10", "windowed forgetting exposes the gap", "WF10 >= 30",
          lambda df, c: final(df, "wf10"), lambda v: v >= 30, kind="supporting", study=SPLIT, arms="er"),
    # Split-digits, fine-tuning control
    Claim("P5 fine-tune forgets", "without replay task 1 is forgotten (catastrophic forgetting)",
          "fine-tune A1(t2) <= 10", lambda df, c: a1_end(df, 2), lambda v: v <= 10, kind="supporting", study=SPLIT,
          arms="finetune"),
    # Rotated-digits (domain-incremental), ER
    Claim("R1 task-1 learned", "task 1 is learned before the switch", "A1(t1) >= 93",
          lambda df, c: a1_end(df, 1), lambda v: v >= 93, kind="supporting", study=ROTATED, arms="er", scales=("smoke",)),
    Claim("R2 gap depth", PAPER_DOMAIN,
          f"A1(t1) - min A1 (first {DIP_WINDOW} its of task 2) >= 8 (our margin)",
          lambda df, c: a1_end(df, 1) - dip_min(df), lambda v: v >= 8, kind="headline", study=ROTATED, arms="er", scales=("smoke",)),
    Claim("R3 recovers", PAPER_DOMAIN_RECOVERS, "A1(t2) - A1(t1) >= -4 (our margin)",
          lambda df, c: a1_end(df, 2) - a1_end(df, 1), lambda v: v >= -4, kind="headline", study=ROTATED, arms="er", scales=("smoke",)),
    Claim("R4 fine-tune forgets", "without replay task 1 is partly forgotten", "fine-tune A1(t2) <= 60",
          lambda df, c: a1_end(df, 2), lambda v: v <= 60, kind="supporting", study=ROTATED, scales=("smoke",),
          arms="finetune"),
]
