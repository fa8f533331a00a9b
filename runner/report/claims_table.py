"""Aggregate per-run claim results over the runs each claim applies to (all must pass)."""
from __future__ import annotations

import math

import numpy as np

from runner.claims import Claim


def aggregate_claims(claims: list[Claim], runs: list) -> list[dict]:
    out = []
    for c in claims:
        results = [(r, c.evaluate(r.metrics, r.cfg)) for r in runs
                   if r.status.get("status") == "completed" and c.relevant(r.cfg)]
        if not results:
            out.append({"name": c.name, "paper": c.paper, "criterion": c.criterion, "n": 0, "n_passed": 0,
                        "measured": None, "min": None, "max": None, "passed": False,
                        "note": "no completed run this claim applies to", "runs": []})
            continue
        vals = np.array([res["measured"] for _, res in results], dtype=float)
        finite = vals[np.isfinite(vals)]
        n_pass = sum(res["passed"] for _, res in results)
        out.append({"name": c.name, "paper": c.paper, "criterion": c.criterion, "n": len(results),
                    "n_passed": n_pass, "passed": n_pass == len(results),
                    "measured": float(finite.mean()) if finite.size else None,
                    "min": float(finite.min()) if finite.size else None,
                    "max": float(finite.max()) if finite.size else None,
                    "runs": [{"run": r.path.name, "measured": res["measured"], "passed": res["passed"]}
                             for r, res in results]})
    return out


def fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def markdown(rows: list[dict]) -> str:
    lines = ["| claim | paper | measured: mean [min, max] | criterion | pass |", "|---|---|---|---|---|"]
    for r in rows:
        m = f"{fmt(r['measured'])} [{fmt(r['min'])}, {fmt(r['max'])}]" if r["n"] else "n/a"
        verdict = f"{'yes' if r['passed'] else '**NO**'} ({r['n_passed']}/{r['n']})"
        lines.append(f"| {r['name']} | {r['paper']} | {m} | {r['criterion']} | {verdict} |")
    return "\n".join(lines)


def text(rows: list[dict]) -> str:
    lines = [f"{'claim':<32} {'mean':>9} {'min':>9} {'max':>9}  {'pass':<9} criterion"]
    for r in rows:
        verdict = f"{'yes' if r['passed'] else 'NO'} {r['n_passed']}/{r['n']}"
        lines.append(f"{r['name']:<32} {fmt(r['measured']):>9} {fmt(r['min']):>9} {fmt(r['max']):>9}  "
                     f"{verdict:<9} {r['criterion']}")
    return "\n".join(lines)
