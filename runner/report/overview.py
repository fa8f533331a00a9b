"""`results/REPORT.md`: one row per paper of the 30, with an honest state and a link to its report.

States: `not yet implemented` (no `experiments/<id>/` folder), `implemented, not run` (no run folder
under the results tree), `runs fail` (run folders exist but none could be read: failed, running,
corrupt), `runs` (runs read, no headline claim evaluated), `reproduced` or `not reproduced` per scale,
from headline claims only (supporting claims and checks are counted beside them).
"""
from __future__ import annotations

import os
from pathlib import Path

from runner import experiments
from runner.report.claims_table import fmt, scale_states
from runner.report.papers import papers
from runner.results import atomic_write

HEADLINE_CLAIMS = 3


def implemented(experiment_id: str) -> bool:
    return experiment_id in experiments.folders()


def state(experiment_id: str, rep) -> tuple[str, str]:
    """(state, detail) for one paper; `rep` is its ExperimentReport or None."""
    if not implemented(experiment_id):
        return ("not yet implemented", "") if rep is None else ("runs", "results present, but no experiment config")
    if rep is None or (not rep.runs and not rep.skipped):
        return "implemented, not run", ""
    if not rep.runs:
        reasons = sorted({s.reason.split(":")[0] for s in rep.skipped})
        return "runs fail", f"{len(rep.skipped)} run(s) left out ({'; '.join(reasons)[:120]})"
    detail = "; reporter errors: " + " / ".join(rep.errors)[:160] if rep.errors else ""
    states = {s: v for s, v in scale_states(rep.claims).items() if v[0] != "no headline claim evaluated"}
    if not states:
        return "runs", "no headline claim evaluated" + detail
    others = [c for c in rep.claims if c["passed"] is not None and c.get("kind") != "headline"]
    n_bad = sum(c["passed"] is False for c in others)
    aside = f"; other claims {len(others) - n_bad}/{len(others)} pass" if others else ""
    word = "not reproduced" if any(st == "not reproduced" for st, _ in states.values()) else "reproduced"
    text = "; ".join(f"{scale}: {st} ({d})" for scale, (st, d) in states.items())
    return word, (text[:220] + aside + detail)


def headline(rep) -> str:
    """The first few evaluated claims' measured means, e.g. 'P2 gap depth = 76.8 (>= 40)'."""
    if rep is None:
        return ""
    shown = [c for c in rep.claims if c["measured"] is not None and c.get("kind") == "headline"][:HEADLINE_CLAIMS]
    return "; ".join(f"{c['name']} = {fmt(c['measured'])}" for c in shown)


def runs_cell(rep) -> str:
    if rep is None or (not rep.runs and not rep.skipped):
        return "0"
    parts = [f"{len(rep.runs)} read"]
    if rep.count("diverged"):
        parts.append(f"{rep.count('diverged')} diverged")
    if rep.skipped:
        parts.append(f"{len(rep.skipped)} left out")
    return ", ".join(parts)


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def write_overview(path: Path, reports: dict, failed_targets: list[str] = ()) -> Path:
    """REPORT.md at `path` from {experiment_id: ExperimentReport} (experiments not among the 30 listed after)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, counts = [], {}
    for p in papers():
        rep = reports.get(p["id"])
        st, detail = state(p["id"], rep)
        counts[st] = counts.get(st, 0) + 1
        if p["id"] in failed_targets:
            detail = (detail + "; " if detail else "") + f"`make {p['id']}` exited non-zero"
        link = f"[report]({os.path.relpath(rep.out_dir / 'report.md', path.parent)})" if rep else ""
        rows.append([p["n"], f"`{p['id']}`", f"{p['title']} ([{p['arxiv']}](https://arxiv.org/abs/{p['arxiv']}))",
                     f"**{st}**" + (f": {detail}" if detail else ""), runs_cell(rep), headline(rep), link])
    md = ["# optrun: reproduction status of the 30 papers", "",
          "Written by `optrun-report` from the results tree next to this file (`make reproduce-smoke` runs "
          "every experiment's smoke target first). Claim values are computed from the logged metrics; "
          "a paper is `reproduced` at a scale only if every headline claim (the paper's own) passes there; "
          "supporting claims and checks are counted beside it.", "",
          "Summary: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1])) + ".", "",
          "| # | id | paper | state | runs | headline claims (means) | report |", "|---|---|---|---|---|---|---|"]
    md += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    others = sorted(set(reports) - {p["id"] for p in papers()})
    if others:
        md += ["", "## Other results in this tree", ""]
        for exp in others:
            rep = reports[exp]
            link = os.path.relpath(rep.out_dir / "report.md", path.parent)
            md.append(f"- `{exp}`: runs {runs_cell(rep)}; [report]({link})")
    if failed_targets:
        md += ["", f"Smoke targets that exited non-zero: {', '.join(f'`{t}`' for t in failed_targets)}."]
    atomic_write(path, "\n".join(md) + "\n")
    return path
