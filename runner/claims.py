"""Claims: a paper's statement, a number computed from logged metrics, and a stated criterion.

A claim never holds a result: `measure(metrics, cfg)` computes it from one run's `metrics.csv`
(a DataFrame) and its config; `check(value)` applies the criterion. A claim speaks about the runs of
one study and its arms (`experiments/<id>/studies.yaml`), narrowed further by `applies(cfg)` on
config values. Across seeds the reporter requires every run to pass.

Kinds: `headline` (the paper's own claim, its number or statement in `paper`) decides whether a
paper is reproduced at a scale; `supporting` adds evidence; `check` holds by construction unless
there is a bug (a bound the controller enforces, a schedule's step count) and is shown apart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # a run imports this module before its first step; pandas only when claims are measured
    import pandas as pd

KINDS = ("headline", "supporting", "check")


def _names(x) -> tuple[str, ...] | None:
    return None if x is None else ((x,) if isinstance(x, str) else tuple(x))


def in_study(cfg: dict, study=None, arms=None) -> bool:
    """Does a run (its config) belong to `study` (a name or names) and one of `arms`? None: any."""
    studies, arm_names = _names(study), _names(arms)
    return (studies is None or cfg.get("study") in studies) and (arm_names is None or cfg.get("arm") in arm_names)


@dataclass
class Claim:
    name: str
    paper: str  # the paper's value or statement, and where it comes from
    criterion: str  # the test, as text, with its threshold
    measure: Callable[[pd.DataFrame, dict], float]
    check: Callable[[float], bool]
    applies: Callable[[dict], bool] = field(default=lambda cfg: True)  # narrows by config values
    scales: tuple[str, ...] = ("smoke", "paper")
    kind: str = "supporting"  # headline | supporting | check
    study: str | tuple[str, ...] | None = None  # the study (or studies) whose runs it speaks about
    arms: str | tuple[str, ...] | None = None  # ... and which of their arms (None: all)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.name!r}: kind={self.kind!r}, expected one of {', '.join(KINDS)}")

    def relevant(self, cfg: dict) -> bool:
        return (cfg.get("scale", "smoke") in self.scales and in_study(cfg, self.study, self.arms)
                and self.applies(cfg))

    def evaluate(self, metrics: pd.DataFrame, cfg: dict) -> dict:
        try:
            value = float(self.measure(metrics, cfg))
            passed = bool(math.isfinite(value) and self.check(value))
            error = None
        except (KeyError, IndexError, ValueError, ZeroDivisionError) as e:
            value, passed, error = math.nan, False, f"could not measure: {type(e).__name__}: {e}"
        out = {"name": self.name, "kind": self.kind, "paper": self.paper, "measured": value,
               "criterion": self.criterion, "passed": passed}
        if error:
            out["error"] = error
        return out


def evaluate_claims(claims: list[Claim], metrics: pd.DataFrame, cfg: dict) -> list[dict]:
    return [c.evaluate(metrics, cfg) for c in claims if c.relevant(cfg)]


def format_table(results: list[dict]) -> str:
    """A plain-text claim table for the terminal."""
    if not results:
        return "(no claims apply to this run)"
    lines = [f"{'claim':<28} {'kind':<10} {'measured':>10}  {'pass':<5} criterion"]
    for r in results:
        m = r["measured"]
        ms = "n/a" if m is None or (isinstance(m, float) and math.isnan(m)) else f"{m:.4g}"
        lines.append(f"{r['name']:<28} {r.get('kind', ''):<10} {ms:>10}  {'yes' if r['passed'] else 'NO':<5} "
                     f"{r['criterion']}")
    return "\n".join(lines)


def cross_run_row(name: str, paper: str, criterion: str, values: list[float], check: Callable[[float], bool],
                  kind: str = "supporting") -> dict:
    """One row of a cross-run claim (`experiments/<id>/claims.py: cross_run_claims`): `values` holds
    one measurement per comparison (e.g. per seed); the claim passes when every one does."""
    import numpy as np

    vals = np.array(values, dtype=float)
    passed = [bool(np.isfinite(v) and check(v)) for v in vals]
    finite = vals[np.isfinite(vals)]
    if kind not in KINDS:
        raise ValueError(f"claim {name!r}: kind={kind!r}, expected one of {', '.join(KINDS)}")
    return {"name": name, "kind": kind, "paper": paper, "criterion": criterion, "n": len(vals), "n_passed": sum(passed),
            "passed": bool(passed) and all(passed), "measured": float(finite.mean()) if finite.size else None,
            "min": float(finite.min()) if finite.size else None, "max": float(finite.max()) if finite.size else None}
