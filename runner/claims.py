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
    """One row of an experiment's `cross_run_claims(runs)`: a claim measured on pairs or groups of runs
    (one value per comparison, e.g. per seed), in the reporter's aggregated format; all must pass.
    Without any comparison (no runs it applies to at this scale) `passed` is None: not applicable."""
    finite = [float(v) for v in values if math.isfinite(v)]
    passed = [bool(math.isfinite(v) and check(v)) for v in values]
    return {"name": name, "paper": paper, "criterion": criterion, "n": len(values), "n_passed": sum(passed),
            "passed": all(passed) if values else None, "measured": sum(finite) / len(finite) if finite else None,
            "min": min(finite) if finite else None, "max": max(finite) if finite else None,
            "note": "" if values else "no pair of runs this claim applies to"}
