"""Run names: deterministic, from the overrides (never the clock); no torch import (`optrun --help`)."""
from __future__ import annotations

import hashlib
import re

MAX_NAME = 120


def run_name(override_dirname: str, study=None, arm=None) -> str:
    """A file-system-safe run name from Hydra's `override_dirname` ('a=1,b=2').

    A run of a declared study and arm is named `<study>.<arm>.<overrides>`; the experiment's
    scale file (`<id>/scale@_global_=...`, added for `scale=`) is implied by `scale=` and left out.
    """
    items = [o for o in override_dirname.split(",") if o and "/scale@_global_=" not in o]
    prefix = ".".join(str(x) for x in (study, arm) if x not in (None, "", "None", "null"))
    name = ",".join(items)
    name = f"{prefix}.{name}" if prefix and name else (prefix or name)
    name = re.sub(r"[^A-Za-z0-9=,._+-]", "_", name) or "default"
    if len(name) > MAX_NAME:
        name = name[: MAX_NAME - 9] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name
