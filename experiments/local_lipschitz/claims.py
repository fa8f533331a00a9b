"""Claims of "Efficiently Computing Local Lipschitz Constants of Neural Networks via Bound Propagation".

The paper's claims (abstract): on tiny models its bounds are comparable to exact methods (LipMIP, LipBaB);
on larger models they are tighter than RecurJac and naive bounds; branch and bound tightens them further.
The smoke thresholds are the issue's (uncalibrated, never changed after a run): ours <= 1.3 x exact on
average over the boxes, naive >= 2 x ours. The ordering lower <= exact <= ours <= interval <= naive on every
box is a `check` (a violation is a bug). Each run is one trained network (one seed); its rows are its boxes.
Claims read the `tiny` study; the arm `bounds` is the method without BaB, `bab` adds branch and bound.
"""
from __future__ import annotations

import numpy as np

from runner.claims import Claim

TINY = "tiny"  # the 16-16-16-10 network (smoke and paper scale)


def boxes(df):
    """The rows that hold a box (every row; the last one also carries the run's references)."""
    return df[df.ours.notna()]


def ordered_share(df) -> float:
    return float(boxes(df).order_ok.mean() * 100)


def mean_ratio(df, num: str, den: str) -> float:
    d = boxes(df)
    return float(np.mean(d[num] / d[den]))


PAPER_TINY = ("on tiny models the bounds are comparable to the exact methods (abstract; LipMIP / LipBaB in the "
              "paper's tiny-model table, whose numbers we did not transcribe)")

CLAIMS = [
    Claim("C1 sound ordering on every box", "lower <= exact <= ours <= RecurJac-like <= naive (soundness and the "
          "paper's relaxation hierarchy: RecurJac is ours with weaker relaxations)",
          "% of boxes with lower <= exact <= ours <= interval <= naive (rel. tol 1e-6) == 100",
          lambda df, c: ordered_share(df), lambda v: v == 100, kind="check", study=TINY, arms="bounds"),
    Claim("C2 ours close to exact", PAPER_TINY, "mean over boxes of ours / exact (MILP) <= 1.3 (the issue's bound)",
          lambda df, c: mean_ratio(df, "ours", "exact"), lambda v: v <= 1.3, kind="headline", study=TINY,
          arms="bounds"),
    Claim("C3 ours much tighter than naive", "our bounds are tighter than the naive product of norms (abstract; "
          "the paper's tables show naive bounds orders of magnitude larger)",
          "mean over boxes of naive / ours >= 2 (the issue's factor)",
          lambda df, c: mean_ratio(df, "naive", "ours"), lambda v: v >= 2, kind="headline", study=TINY,
          arms="bounds"),
    Claim("C4 ours tighter than RecurJac-like", "tighter than RecurJac, which is a special case with weaker "
          "relaxations (abstract)", "mean over boxes of interval / ours > 1",
          lambda df, c: mean_ratio(df, "interval", "ours"), lambda v: v > 1, kind="supporting", study=TINY,
          arms="bounds"),
    Claim("C5 BaB sound and no looser", "branch and bound tightens the bounds further (abstract)",
          "% of boxes with exact <= ours_bab <= ours (rel. tol 1e-6) == 100",
          lambda df, c: float(np.mean([(e <= b * (1 + 1e-6) + 1e-6) and (b <= o * (1 + 1e-6) + 1e-6)
                                       for e, b, o in zip(boxes(df).exact, boxes(df).ours_bab, boxes(df).ours)]) * 100),
          lambda v: v == 100, kind="check", study=TINY, arms="bab"),
    Claim("C6 BaB close to exact", PAPER_TINY + "; with BaB", "mean over boxes of ours_bab / exact <= 1.3 (the issue's bound)",
          lambda df, c: mean_ratio(df, "ours_bab", "exact"), lambda v: v <= 1.3, kind="supporting", study=TINY,
          arms="bab"),
]
