"""Claim rows for one experiment: per-run claims aggregated per scale, plus cross-run claims.

Per-run claims (`CLAIMS`) are evaluated on every completed run they apply to; a claim passes at a
scale when every such run passes. Diverged runs are left out (and said so in the row's note).
Cross-run claims come from `claims.cross_run_claims(runs)`, called once per scale with that scale's
runs (completed and diverged). Every row says its scale, its `form` (per-run or cross-run) and its
`kind` (headline, supporting, check); `passed` is True, False, or None for a claim that does not
apply at any scale present (it never makes `--check` fail). Only headline rows decide whether a
paper is reproduced at a scale (`scale_states`).
"""
from __future__ import annotations

import math

import numpy as np

from runner.claims import Claim
from runner.report.runs import error_line


def _row(name, paper, criterion, scale, passed, form="per-run", kind="supporting", **extra) -> dict:
    row = {"name": name, "kind": kind, "form": form, "scale": scale, "paper": paper, "criterion": criterion,
           "n": 0, "n_passed": 0,
           "measured": None, "min": None, "max": None, "passed": passed, "note": ""}
    row.update(extra)
    return row


def _evaluate(c: Claim, run) -> dict:
    try:
        return c.evaluate(run.metrics, run.cfg)
    except Exception as e:  # noqa: BLE001 -- a bug in one measure must not hide the other claims
        return {"measured": math.nan, "passed": False, "error": f"could not measure: {error_line(e)}"}


def _applies(c: Claim, cfg: dict) -> bool:
    try:
        return bool(c.relevant(cfg))
    except Exception:  # noqa: BLE001 -- the selector reads a key this run's config does not have
        return False


def claim_rows(c: Claim, runs: list) -> list[dict]:
    """One row per scale at which `c` applies to some run."""
    relevant = [r for r in runs if _applies(c, r.cfg)]
    declared = "/".join(c.scales)
    if not relevant:
        present = sorted({r.scale for r in runs})
        if not any(s in c.scales for s in present):
            return [_row(c.name, c.paper, c.criterion, declared, None, kind=c.kind, applies_to=list(c.scales),
                         note=f"applies at scale {declared} only; no such run here")]
        return [_row(c.name, c.paper, c.criterion, ",".join(s for s in present if s in c.scales), False,
                     kind=c.kind, applies_to=list(c.scales), note="no run this claim applies to")]
    rows = []
    for scale in sorted({r.scale for r in relevant}):
        rs = [r for r in relevant if r.scale == scale]
        done = [r for r in rs if r.completed]
        diverged = [r.name for r in rs if r.diverged]
        notes = [f"{len(diverged)} diverged run(s) left out: {', '.join(diverged)}"] if diverged else []
        if not done:
            rows.append(_row(c.name, c.paper, c.criterion, scale, False, kind=c.kind, applies_to=list(c.scales),
                             note="; ".join(["no completed run this claim applies to", *notes])))
            continue
        results = [(r, _evaluate(c, r)) for r in done]
        vals = np.array([res["measured"] for _, res in results], dtype=float)
        finite = vals[np.isfinite(vals)]
        n_pass = sum(bool(res["passed"]) for _, res in results)
        errors = sorted({res["error"] for _, res in results if res.get("error")})
        rows.append(_row(c.name, c.paper, c.criterion, scale, n_pass == len(results), kind=c.kind,
                         applies_to=list(c.scales),
                         n=len(results), n_passed=n_pass,
                         measured=float(finite.mean()) if finite.size else None,
                         min=float(finite.min()) if finite.size else None,
                         max=float(finite.max()) if finite.size else None,
                         note="; ".join([*errors, *notes]),
                         runs=[{"run": r.name, "measured": res["measured"], "passed": bool(res["passed"]),
                                **({"error": res["error"]} if res.get("error") else {})} for r, res in results]))
    return rows


def aggregate_claims(claims: list[Claim], runs: list) -> list[dict]:
    return [row for c in claims for row in claim_rows(c, runs)]


def _number(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def cross_run_rows(fn, runs: list) -> list[dict]:
    """Rows of an experiment's `cross_run_claims(runs)`, one call per scale, checked and completed."""
    out = []
    for scale in sorted({r.scale for r in runs}):
        rs = [r for r in runs if r.scale == scale]
        try:
            got = list(fn(rs))
        except Exception as e:  # noqa: BLE001
            out.append(_row("cross-run claims", "", "", scale, False, form="cross-run", kind="check",
                            note=f"cross_run_claims raised {error_line(e)}"))
            continue
        for i, g in enumerate(got):
            if not isinstance(g, dict) or "name" not in g or "passed" not in g:
                out.append(_row(f"cross-run claim #{i + 1}", "", "", scale, False, form="cross-run", kind="check",
                                note="malformed row (needs at least name and passed)"))
                continue
            passed = None if g["passed"] is None else bool(g["passed"])
            out.append(_row(str(g["name"]), str(g.get("paper", "")), str(g.get("criterion", "")),
                            str(g.get("scale", scale)), passed, form="cross-run", kind=str(g.get("kind", "supporting")),
                            n=g.get("n", 0), n_passed=g.get("n_passed", 0),
                            measured=_number(g.get("measured")), min=_number(g.get("min")),
                            max=_number(g.get("max")), note=str(g.get("note", "") or "")))
    return out


def any_failed(rows: list[dict], kinds=("headline",)) -> bool:
    return any(r["passed"] is False for r in rows if r.get("kind", "supporting") in kinds)


def scale_states(rows: list[dict]) -> dict[str, tuple[str, str]]:
    """{scale: (state, detail)} from headline rows only: reproduced, not reproduced, no headline claim."""
    out = {}
    for scale in sorted({s for r in rows if r["passed"] is not None for s in str(r["scale"]).split(",")}):
        at = [r for r in rows if r["passed"] is not None and scale in str(r["scale"]).split(",")]
        heads = [r for r in at if r.get("kind") == "headline"]
        if not heads:
            out[scale] = ("no headline claim evaluated", f"{len(at)} other claim(s)")
            continue
        failed = [r["name"] for r in heads if r["passed"] is False]
        out[scale] = (("not reproduced", f"{len(failed)} of {len(heads)} headline claims fail: {', '.join(failed)}")
                      if failed else ("reproduced", f"{len(heads)}/{len(heads)} headline claims pass"))
    return out


def fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def measured_text(r: dict) -> str:
    if r["measured"] is None:
        return "n/a"
    if r["min"] is None or r["max"] is None or r["min"] == r["max"] == r["measured"]:
        return fmt(r["measured"])
    return f"{fmt(r['measured'])} [{fmt(r['min'])}, {fmt(r['max'])}]"


def verdict(r: dict, bold: bool = False) -> str:
    if r["passed"] is None:
        return "n/a"
    word = "yes" if r["passed"] else ("**NO**" if bold else "NO")
    return f"{word} ({r['n_passed']}/{r['n']})" if r["n"] else word


def _cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


KIND_TITLES = {"headline": "Headline claims (the paper's own; they decide \"reproduced\")",
               "supporting": "Supporting claims", "check": "Checks (hold by construction unless there is a bug)"}


def markdown(rows: list[dict], headings: str = "###") -> str:
    """The claim table, one section per kind (headline first, checks apart)."""
    parts = []
    for kind, title in KIND_TITLES.items():
        mine = [r for r in rows if r.get("kind", "supporting") == kind]
        if not mine:
            continue
        lines = [f"{headings} {title}", "", "| claim | scale | paper | measured: mean [min, max] | criterion | pass | note |",
                 "|---|---|---|---|---|---|---|"]
        for r in mine:
            cells = [r["name"] + (" (cross-run)" if r.get("form") == "cross-run" else ""), r["scale"], r["paper"],
                     measured_text(r), r["criterion"], verdict(r, bold=True), r.get("note", "")]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def text(rows: list[dict]) -> str:
    lines = [f"{'claim':<34} {'kind':<10} {'scale':<6} {'mean':>9} {'min':>9} {'max':>9}  {'pass':<9} criterion"]
    for r in sorted(rows, key=lambda r: list(KIND_TITLES).index(r.get("kind", "supporting"))):
        name = r["name"] if r.get("form") != "cross-run" else f"{r['name']} [x]"
        lines.append(f"{name[:34]:<34} {r.get('kind', ''):<10} {r['scale']:<6} {fmt(r['measured']):>9} {fmt(r['min']):>9} "
                     f"{fmt(r['max']):>9}  {verdict(r):<9} {r['criterion']}")
        if r.get("note") and r["passed"] is not True:
            lines.append(f"{'':<36}note: {r['note']}")
    return "\n".join(lines)
