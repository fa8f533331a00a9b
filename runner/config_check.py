"""Check command-line overrides before Hydra runs, so a typo costs one clear line, not a traceback.

Catches: an unknown option of a config group (`optimizer=nonexistent`), an unknown key
(`optimizer.lrr=0.1`), a value whose type does not match the default (`optimizer.lr=abc`), and any
other composition error, reported by Hydra's own message reduced to its first line.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from runner.errors import OptrunError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
_MISSING = object()


def _expected_type(default) -> tuple[tuple[type, ...], str] | None:
    if default is None or isinstance(default, str) and default in ("???",):
        return None
    if isinstance(default, bool):
        return (bool,), "a boolean (true/false)"
    if isinstance(default, int):
        return (int,), "an integer"
    if isinstance(default, float):
        return (int, float), "a number"
    if isinstance(default, str):
        return None  # strings accept anything Hydra parsed (numbers become names, paths, ...)
    if isinstance(default, (list, ListConfig)):
        return (list,), "a list like [a,b]"
    if isinstance(default, (dict, DictConfig)):
        return (dict,), "a mapping like {k: v}"
    return None


def _values(o) -> list:
    if o.is_sweep_override():
        try:
            return list(o.sweep_iterator())
        except Exception:  # glob or interval sweeps: nothing simple to check
            return []
    return [o.value()]


def _first_form(o) -> str:
    if not o.is_sweep_override():
        return o.input_line
    vals = _values(o)
    return o.get_key_element() + "=" + o._get_value_element_as_str(vals[0]) if vals else o.input_line


def _all_keys(cfg, prefix="") -> list[str]:
    out = []
    if isinstance(cfg, DictConfig):
        for k in cfg.keys():
            key = f"{prefix}{k}"
            out.append(key)
            out.extend(_all_keys(cfg._get_node(k), key + "."))
    return out


def check_overrides(overrides: list[str], config_name: str = "config", multirun: bool = True) -> None:
    """Raise OptrunError with a one-line message for the first bad override. Without `multirun` (-m),
    a sweep such as `seed=0,1` is an error, as Hydra would say."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from runner.experiments import register_search_path

    register_search_path()
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise OptrunError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None
    parsed = [o for o in parsed if not o.key_or_group.startswith("hydra")]
    if not multirun:
        sweep = next((o for o in parsed if o.is_sweep_override()), None)
        if sweep is not None:
            raise OptrunError(f"{sweep.input_line}: a sweep needs -m (--multirun); for a list value write "
                              f"{sweep.get_key_element()}=[...]")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        groups, values = [], []
        for o in parsed:
            options = loader.get_group_options(o.key_or_group)
            (groups if options else values).append(o)
            if not options or o.is_delete():
                continue
            for v in _values(o):
                if v is None:  # Hydra raises a bare ValueError for `group=null`
                    raise OptrunError(f"{o.key_or_group}=null: a config group needs one of its options "
                                      f"(available: {', '.join(options)})")
                for choice in (v if isinstance(v, list) else [v]):
                    if choice is not None and str(choice) not in options:
                        hint = difflib.get_close_matches(str(choice), options, n=1)
                        raise OptrunError(
                            f"{o.key_or_group}={choice}: no such option in "
                            f"{'experiments/<id>/ (a folder per paper)' if o.key_or_group == 'experiment' else f'conf/{o.key_or_group}/'} "
                            f"(available: {', '.join(options)})" + (f"; did you mean '{hint[0]}'?" if hint else ""))
        try:
            base = compose(config_name, overrides=[_first_form(o) for o in groups])
        except HydraException as e:
            raise OptrunError(str(e).strip().splitlines()[0]) from None
        keys = None
        for o in values:
            if o.is_add() or o.is_delete() or o.is_force_add():
                continue
            key = o.key_or_group
            default = OmegaConf.select(base, key, default=_MISSING, throw_on_missing=False)
            if default is _MISSING:
                keys = keys or _all_keys(base)
                hint = difflib.get_close_matches(key, keys, n=1)
                raise OptrunError(f"{key}: unknown key" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                                  + f"; to add a new key use +{key}=...")
            node = OmegaConf.select(base, key, throw_on_missing=False)
            expected = _expected_type(node if not isinstance(node, (DictConfig, ListConfig)) else node)
            if expected is None:
                continue
            types, words = expected
            for v in _values(o):
                if v is None or isinstance(v, types) and not (bool in types) ^ isinstance(v, bool):
                    continue
                raise OptrunError(f"{key}={v!r}: expected {words} (default: {OmegaConf.to_yaml(node).strip() if isinstance(node, (DictConfig, ListConfig)) else node!r})")
        try:
            final = compose(config_name, overrides=[_first_form(o) for o in parsed])
        except HydraException as e:
            msg = " ".join(line.strip() for line in str(e).strip().splitlines()[:2])
            raise OptrunError(msg) from None
        except Exception as e:  # OmegaConf validation and interpolation errors
            raise OptrunError(f"{type(e).__name__}: {str(e).strip().splitlines()[0]}") from None
    GlobalHydra.instance().clear()
    check_results_dir(str(final.get("results_dir", "results")))


def check_results_dir(results_dir: str) -> None:
    """Fail before Hydra creates run folders if the results root cannot be written."""
    import os
    import tempfile

    path = Path(results_dir).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".optrun-write-test"):
            pass
    except OSError as e:
        raise OptrunError(f"results_dir={results_dir}: cannot write there ({e.strerror or type(e).__name__})") from None
    if not os.access(path, os.W_OK):
        raise OptrunError(f"results_dir={results_dir}: not writable")
