"""Per-run convergence traces for solver-style figures: runs grouped by problem setting (one panel
column each), every seed drawn as a thin line, each method named once in the legend with its count."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable


def by_setting(runs: list, setting: Callable[[dict], str], column: str) -> dict[str, list]:
    """Completed runs that logged `column`, grouped by `setting(cfg)`."""
    groups: dict[str, list] = defaultdict(list)
    for r in runs:
        if r.status.get("status") == "completed" and column in r.metrics:
            groups[setting(r.cfg)].append(r)
    return dict(groups)


def draw_seed_traces(runs: list, label: Callable[[dict], str], draw: Callable, order: Callable[[dict], object] = None
                     ) -> None:
    """draw(run, legend_label_or_None) for every run, methods in `order` (default: by label), seeds ascending;
    the first run of a method carries '<label> (<k> seeds)'."""
    order = order or label
    seen = set()
    for r in sorted(runs, key=lambda r: (order(r.cfg), r.cfg.get("seed", 0))):
        name = label(r.cfg)
        count = sum(label(o.cfg) == name for o in runs)
        draw(r, None if name in seen else f"{name} ({count} seed{'s' if count != 1 else ''})")
        seen.add(name)
