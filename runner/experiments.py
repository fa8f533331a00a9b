"""Experiments are folders. `experiments/<id>/` is one paper, and the core finds it by its id alone.

A folder counts as an experiment when it holds `conf/experiment/<id>.yaml`. Its parts:

    conf/experiment/<id>.yaml   the experiment (`experiment=<id>`); its defaults list includes
                                `/<id>/scale@_global_: smoke`
    conf/<id>/scale/<s>.yaml    what scale <s> changes (group switches allowed): smoke, paper
    conf/<id>/...               any other group only this paper uses (`<id>=<option>` on the command line)
    studies.yaml                per scale: studies -> arms (overrides) and the sweep (seeds, grids)
    claims.py plots.py          claims (by study/arm) and figures; `README.md`, the paper's card

`conf/` of every folder is on Hydra's search path (a search-path plugin registered here), so
nothing in `runner/` names a paper. Extra experiment roots come from `OPTRUN_EXPERIMENTS`
(os.pathsep-separated folders laid out like `experiments/`): a copied folder under a new id is an
experiment without any edit here. This module imports no torch (`optrun --help` stays fast).
"""
from __future__ import annotations

import importlib
import os
from functools import lru_cache
from pathlib import Path

import yaml

from runner.errors import OptrunError

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = ROOT / "experiments"
SCALES = ("smoke", "paper")


def roots() -> list[Path]:
    extra = [Path(p).resolve() for p in os.environ.get("OPTRUN_EXPERIMENTS", "").split(os.pathsep) if p]
    return [*extra, EXPERIMENTS_DIR]


def folders() -> dict[str, Path]:
    """{id: folder}; the first root that has an id wins."""
    out: dict[str, Path] = {}
    for root in roots():
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if d.name not in out and (d / "conf" / "experiment" / f"{d.name}.yaml").is_file():
                out[d.name] = d
    return out


def ids() -> list[str]:
    return sorted(folders())


def folder(experiment_id: str) -> Path:
    found = folders().get(experiment_id)
    if found is None:
        raise OptrunError(f"experiment={experiment_id}: no folder experiments/{experiment_id}/ with "
                          f"conf/experiment/{experiment_id}.yaml (known: {', '.join(ids())})")
    return found


def config_file(experiment_id: str) -> Path:
    return folder(experiment_id) / "conf" / "experiment" / f"{experiment_id}.yaml"


def one_line(experiment_id: str) -> str:
    """The experiment's first comment line (what `optrun --help` shows)."""
    for line in config_file(experiment_id).read_text().splitlines():
        s = line.strip()
        if s.startswith("#") and "@package" not in s:
            return s.lstrip("# ").strip()
    return ""


# ---- Hydra: every experiment's conf/ on the search path -------------------------------------------

def register_search_path() -> None:
    """Make Hydra look in every experiment's `conf/` (for `hydra.main` and `compose` alike)."""
    from hydra.core.config_search_path import ConfigSearchPath
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    global _PLUGIN
    if _PLUGIN is None:
        class OptrunExperiments(SearchPathPlugin):
            def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
                for d in folders().values():
                    search_path.append(provider="optrun-experiments", path=f"file://{d / 'conf'}")

        _PLUGIN = OptrunExperiments
        Plugins.instance().register(OptrunExperiments)


_PLUGIN = None


def _key_value(override: str) -> tuple[str, str | None]:
    key, sep, value = override.partition("=")
    return key.lstrip("+~"), (value if sep else None)


def with_scale(overrides: list[str]) -> list[str]:
    """Add the experiment's scale file for `scale=<s>`: `<id>/scale@_global_=<s>`.

    Hydra cannot switch config groups from a file chosen by interpolation, so `scale=paper`
    selects the experiment's own `<id>/scale` option here; the file may then switch model,
    optimizer, dataset, trainer, schedule or hooks like any experiment file.
    """
    values = dict(_key_value(o) for o in overrides)
    exp, scale = values.get("experiment"), values.get("scale")
    if not exp or not scale or any(k.endswith("/scale@_global_") for k in values):
        return list(overrides)
    if "," in scale:
        raise OptrunError(f"scale={scale}: sweep one scale at a time (the scale chooses the experiment's setup)")
    if "," in exp or exp not in folders():
        return list(overrides)  # the override check reports an unknown experiment
    options = sorted(p.stem for p in (folder(exp) / "conf" / exp / "scale").glob("*.yaml"))
    if scale not in options:
        raise OptrunError(f"scale={scale}: experiment {exp} has no conf/{exp}/scale/{scale}.yaml "
                          f"(available: {', '.join(options) or 'none'})")
    return [*overrides, f"{exp}/scale@_global_={scale}"]


def compose(overrides: list[str] = (), config_name: str = "config", return_hydra_config: bool = False):
    """The config `optrun <overrides>` would run (scale file included), for tests and benchmarks."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from runner.config_check import CONF_DIR

    register_search_path()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base=None):
            return hydra_compose(config_name, overrides=with_scale(list(overrides)),
                                 return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()


# ---- the experiment's own Python parts ------------------------------------------------------------

def _extend_package_path() -> None:
    import experiments

    for root in roots():
        if root.is_dir() and str(root) not in experiments.__path__:
            experiments.__path__.insert(0, str(root))


def module(experiment_id: str, part: str):
    """`experiments.<id>.<part>`, or None when the experiment does not define that part."""
    _extend_package_path()
    try:
        return importlib.import_module(f"experiments.{experiment_id}.{part}")
    except ModuleNotFoundError as e:
        if e.name and (e.name == "experiments" or e.name.startswith(f"experiments.{experiment_id}")):
            return None
        raise


# ---- studies.yaml ---------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _read_studies(path: Path, mtime: float) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise OptrunError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise OptrunError(f"{path}: expected a mapping scale -> studies, got {type(data).__name__}")
    for scale, studies in data.items():
        if scale not in SCALES:
            raise OptrunError(f"{path}: scale '{scale}': expected one of {', '.join(SCALES)}")
        if not isinstance(studies, dict) or not studies:
            raise OptrunError(f"{path}: {scale}: expected a mapping study -> {{arms, sweep, overrides}}")
        for name, study in studies.items():
            where = f"{path}: {scale}.{name}"
            if not isinstance(study, dict) or not isinstance(study.get("arms"), dict) or not study["arms"]:
                raise OptrunError(f"{where}: expected 'arms: {{name: [overrides]}}' with at least one arm")
            unknown = set(study) - {"about", "overrides", "arms", "sweep"}
            if unknown:
                raise OptrunError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                                  f"(expected about, overrides, arms, sweep)")
            lists = {key: study.get(key) or [] for key in ("overrides", "sweep")}
            lists.update({f"arms.{arm}": ovr or [] for arm, ovr in study["arms"].items()})
            for key, items in lists.items():
                if not isinstance(items, list) or not all(isinstance(o, str) and ("=" in o or o.startswith("~"))
                                                          for o in items):
                    raise OptrunError(f"{where}.{key}: expected a list of overrides 'key=value' (quote a sweep "
                                      f"in a flow list: ['seed=0,1,2'], since YAML splits [seed=0,1,2] at commas)")
    return data


def studies(experiment_id: str, scale: str) -> dict:
    """{study: {about, overrides, arms: {arm: [overrides]}, sweep}} declared for one scale."""
    path = folder(experiment_id) / "studies.yaml"
    if not path.is_file():
        raise OptrunError(f"{path}: missing (an experiment declares its studies and arms per scale there)")
    data = _read_studies(path, path.stat().st_mtime)
    if scale not in data:
        raise OptrunError(f"{path}: no studies for scale={scale} (declared: {', '.join(data) or 'none'})")
    return data[scale]


def arm_runs(experiment_id: str, scale: str, user: list[str] = ()) -> list[tuple[str, str, list[str]]]:
    """[(study, arm, overrides)], one Hydra multirun each; a user override replaces the same key."""
    out = []
    for name, study in studies(experiment_id, scale).items():
        for arm, ovr in study["arms"].items():
            parts = [f"experiment={experiment_id}", f"scale={scale}", f"study={name}", f"arm={arm}",
                     *study.get("overrides", []), *(ovr or []), *study.get("sweep", [])]
            mine = {_key_value(o)[0] for o in user}
            out.append((name, arm, [o for o in parts if _key_value(o)[0] not in mine] + list(user)))
    return out
