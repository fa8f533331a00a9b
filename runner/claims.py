"""Claims: a paper's statement, a number computed from logged metrics, and a stated criterion.

A claim never holds a result: `measure(metrics, cfg)` computes it from one run's `metrics.csv`
(a DataFrame) and its config; `check(value)` applies the criterion. `applies(cfg)` selects the runs
a claim speaks about (e.g. only ER runs). Across seeds the reporter requires every run to pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd


@dataclass
class Claim:
    name: str
    paper: str  # the paper's value or statement, and where it comes from
    criterion: str  # the test, as text, with its threshold
    measure: Callable[[pd.DataFrame, dict], float]
    check: Callable[[float], bool]
    applies: Callable[[dict], bool] = field(default=lambda cfg: True)
    scales: tuple[str, ...] = ("smoke", "paper")

    def relevant(self, cfg: dict) -> bool:
        return cfg.get("scale", "smoke") in self.scales and self.applies(cfg)

    def evaluate(self, metrics: pd.DataFrame, cfg: dict) -> dict:
        try:
            value = float(self.measure(metrics, cfg))
            passed = bool(math.isfinite(value) and self.check(value))
            error = None
        except (KeyError, IndexError, ValueError, ZeroDivisionError) as e:
            value, passed, error = math.nan, False, f"could not measure: {type(e).__name__}: {e}"
        out = {"name": self.name, "paper": self.paper, "measured": value, "criterion": self.criterion,
               "passed": passed}
        if error:
            out["error"] = error
        return out


def evaluate_claims(claims: list[Claim], metrics: pd.DataFrame, cfg: dict) -> list[dict]:
    return [c.evaluate(metrics, cfg) for c in claims if c.relevant(cfg)]


def format_table(results: list[dict]) -> str:
    """A plain-text claim table for the terminal."""
    if not results:
        return "(no claims apply to this run)"
    lines = [f"{'claim':<28} {'measured':>10}  {'pass':<5} criterion"]
    for r in results:
        m = r["measured"]
        ms = "n/a" if m is None or (isinstance(m, float) and math.isnan(m)) else f"{m:.4g}"
        lines.append(f"{r['name']:<28} {ms:>10}  {'yes' if r['passed'] else 'NO':<5} {r['criterion']}")
    return "\n".join(lines)


def cross_run_row(name: str, paper: str, criterion: str, values: list[float], check: Callable[[float], bool]) -> dict:
    """One row of a cross-run claim (`experiments/<id>/claims.py: cross_run_claims`): `values` holds
    one measurement per comparison (e.g. per seed); the claim passes when every one does."""
    import numpy as np

    vals = np.array(values, dtype=float)
    passed = [bool(np.isfinite(v) and check(v)) for v in vals]
    finite = vals[np.isfinite(vals)]
    return {"name": name, "paper": paper, "criterion": criterion, "n": len(vals), "n_passed": sum(passed),
            "passed": bool(passed) and all(passed), "measured": float(finite.mean()) if finite.size else None,
            "min": float(finite.min()) if finite.size else None, "max": float(finite.max()) if finite.size else None}
