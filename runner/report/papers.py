"""The 30 papers optrun reproduces (id, title, arXiv, a short name for figure titles).

Shipped as `papers.csv` inside the package so that the overview (`results/REPORT.md`) and figure
titles work from any installed copy, without the notes folder next to the repository.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

PAPERS_CSV = Path(__file__).with_name("papers.csv")


@lru_cache(maxsize=1)
def papers() -> tuple[dict, ...]:
    with open(PAPERS_CSV, newline="") as f:
        return tuple(csv.DictReader(f))


def paper(experiment_id: str) -> dict | None:
    return next((p for p in papers() if p["id"] == experiment_id), None)


def short_name(experiment_id: str) -> str:
    """'Ghosts of Softmax' for 'ghosts_softmax'; the id itself for anything not in the list."""
    p = paper(experiment_id)
    return p["short"] if p else experiment_id
