"""Every experiment folder is one complete unit: it composes at both scales as its card says, its
paper-scale arms run on a stand-in of the same shapes, its claims name studies it declares, and a
copied folder under a new id is a new experiment without any edit outside it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from runner import experiments
from runner.claims import Claim
from runner.config_check import _first_form
from runner.errors import OptrunError
from runner.report import card

ROOT = Path(__file__).resolve().parent.parent
IDS = experiments.ids()
SETUP_RE = re.compile(r"<!-- optrun:setup -->\n(.*?)<!-- optrun:end -->", re.S)
GROUPS = ("trainer", "model", "dataset", "optimizer")


def card_setup(exp: str) -> dict[str, dict[str, str]]:
    """{scale: {group: option}} from the card's setup table."""
    text = (experiments.folder(exp) / "README.md").read_text()
    m = SETUP_RE.search(text)
    assert m, f"experiments/{exp}/README.md has no <!-- optrun:setup --> table"
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in m.group(1).strip().splitlines()]
    head = rows[0]
    return {r[0]: dict(zip(head[1:], r[1:])) for r in rows[2:]}


def choices(overrides: list[str]) -> dict:
    """{group: option} that Hydra chose for these overrides."""
    return dict(experiments.compose(overrides, return_hydra_config=True).hydra.runtime.choices)


def test_the_thirteen_landed_papers_are_folders():
    assert len(IDS) >= 13, IDS
    assert not (ROOT / "conf" / "experiment").exists() or not list((ROOT / "conf" / "experiment").glob("*.yaml"))
    assert not (ROOT / "conf" / "scale_preset").exists()


@pytest.mark.parametrize("exp", IDS)
@pytest.mark.parametrize("scale", experiments.SCALES)
def test_every_experiment_composes_at_both_scales_as_its_card_says(make_cfg, exp, scale):
    cfg = make_cfg(f"experiment={exp}", f"scale={scale}")
    assert cfg.experiment_id == exp and cfg.scale == scale
    want = card_setup(exp).get(scale)
    assert want, f"the card of {exp} has no row for scale {scale}"
    got = choices([f"experiment={exp}", f"scale={scale}"])
    for group in GROUPS:
        assert str(got.get(group)) == want[group], f"{exp} at {scale}: {group} is {got.get(group)}, card says {want[group]}"


def _single(overrides: list[str]) -> list[str]:
    """The first value of every sweep (`seed=0,1,2` -> `seed=0`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return [_first_form(o) for o in OverridesParser.create().parse_overrides(overrides)]


UNREADABLE = "unreadable"  # the arm name of a folder whose studies.yaml cannot be read


def _arms(scale: str) -> list[tuple[str, str, str, list[str]]]:
    """Every (experiment, study, arm, overrides); a folder whose studies.yaml is broken becomes one
    failing case of its own instead of stopping the collection of every experiment's tests."""
    out = []
    for exp in IDS:
        try:
            out += [(exp, study, arm, ovr) for study, arm, ovr in experiments.arm_runs(exp, scale)]
        except OptrunError as e:
            out.append((exp, "studies", UNREADABLE, [str(e)]))
    return out


def _fail_if_unreadable(arm: str, overrides: list[str]) -> None:
    if arm == UNREADABLE:
        pytest.fail(overrides[0])


@pytest.mark.parametrize("exp, study, arm, overrides",
                         [pytest.param(*a, id=f"{a[0]}-{a[1]}-{a[2]}") for a in _arms("smoke")])
def test_every_smoke_arm_composes(make_cfg, exp, study, arm, overrides):
    _fail_if_unreadable(arm, overrides)
    cfg = make_cfg(*_single(overrides))
    assert (cfg.study, cfg.arm, cfg.scale) == (study, arm, "smoke")


PROBE_SIZES = {"prune": {"m": 8, "grad_batch": 1, "rounds": 1, "loss_samples": 64},
               "grad_alignment": {"trials": 2}, "zo_alignment": {"trials": 2}}


@pytest.mark.parametrize("exp, study, arm, overrides",
                         [pytest.param(*a, id=f"{a[0]}-{a[1]}-{a[2]}") for a in _arms("paper")])
def test_every_paper_arm_runs_two_steps_on_a_stand_in(make_cfg, stand_in, tmp_path, exp, study, arm, overrides):
    """The paper's setup (model, data shapes, optimizer, hooks) builds and steps on the CPU."""
    _fail_if_unreadable(arm, overrides)
    from runner.dispatch import build
    from runner.engine import Engine
    from runner.results import MetricsWriter

    cfg = make_cfg(*_single(overrides), "device=cpu", f"results_dir={tmp_path}")
    stand_in(cfg)
    for hook, small in PROBE_SIZES.items():  # end-of-run probes at paper size take hours on a CPU
        if hook in (cfg.get("hooks") or {}):
            cfg.hooks[hook].update(small)
    if "reference" in (cfg.get("problem") or {}):  # exact solvers' reference values (POT at n = 784) take minutes
        cfg.problem.reference = False
    state, trainer, hooks = build(cfg)
    phases = trainer.phases

    def two_steps(s):
        out, left = [], 2
        for p in phases(s):
            if left:
                out.append(replace(p, steps=min(p.steps, left)))
                left -= out[-1].steps
        return out

    trainer.phases = two_steps
    outcome = Engine(trainer, hooks, MetricsWriter(tmp_path / "metrics.csv"), progress=False).run(state)
    assert outcome.status in ("completed", "diverged") and 1 <= outcome.step <= 2


@pytest.mark.parametrize("exp", IDS)
def test_claims_have_kinds_and_name_declared_studies(exp):
    mod = experiments.module(exp, "claims")
    assert mod is not None, f"experiments/{exp}/claims.py is missing"
    claims: list[Claim] = list(getattr(mod, "CLAIMS", []))
    declared = {scale: experiments.studies(exp, scale) for scale in experiments.SCALES}
    for c in claims:
        for scale in c.scales:
            if c.study is None:
                continue
            names = (c.study,) if isinstance(c.study, str) else c.study
            known = set(declared[scale])
            assert known & set(names), f"{exp}: claim {c.name!r} at {scale} names studies {names}, declared: {known}"
            for name in set(names) & known:
                arms = declared[scale][name]["arms"]
                wanted = (c.arms,) if isinstance(c.arms, str) else (c.arms or ())
                assert set(wanted) <= set(arms), f"{exp}: claim {c.name!r}: arms {wanted} not in {name}: {set(arms)}"
    source = (experiments.folder(exp) / "claims.py").read_text()
    assert not re.search(r"endswith\(\"[A-Z]\w+\"\)", source), f"{exp}: claims select runs by class name"
    assert 'kind="headline"' in source, f"{exp}: no headline claim (the paper's own claim) declared"


def test_scale_is_one_line_errors():
    with pytest.raises(OptrunError, match=r"scale=bogus: experiment stability_gap has no conf/stability_gap/scale/bogus.yaml"):
        experiments.with_scale(["experiment=stability_gap", "scale=bogus"])
    with pytest.raises(OptrunError, match="sweep one scale at a time"):
        experiments.with_scale(["experiment=stability_gap", "scale=smoke,paper"])


def test_bad_studies_file_is_a_clear_error(tmp_path, monkeypatch):
    src = experiments.folder("stability_gap")
    dst = tmp_path / "experiments" / "stability_gap"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("OPTRUN_EXPERIMENTS", str(tmp_path / "experiments"))
    (dst / "studies.yaml").write_text("smoke:\n  s:\n    arms:\n      a: [seed=0,1]\n")
    with pytest.raises(OptrunError, match=r"studies.yaml: smoke.s.arms.a: expected a list of overrides"):
        experiments.studies("stability_gap", "smoke")
    (dst / "studies.yaml").write_text("huge:\n  s: {arms: {a: []}}\n")
    with pytest.raises(OptrunError, match=r"scale 'huge': expected one of smoke, paper"):
        experiments.studies("stability_gap", "smoke")


def test_readme_table_of_papers_is_up_to_date():
    readme = (ROOT / "README.md").read_text()
    assert card.readme_with_table(readme) == readme, "README.md's table of papers is out of date: run `make readme`"


def test_nothing_refers_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    bad = [f for f in files if (ROOT / f).is_file()
           and re.search(r"\.\.[/]shared|shared[/]papers", (ROOT / f).read_text(errors="ignore"))]
    assert not bad, f"files that refer to the notes outside the repository: {bad}"


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_a_copied_folder_is_a_new_experiment(tmp_path):
    """Copy a paper's folder under a new id into a temporary tree: listed, reproducible, reported."""
    tree = tmp_path / "tree"
    new = tree / "experiments" / "gap_copy"
    shutil.copytree(experiments.folder("stability_gap"), new, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "Makefile", tree / "Makefile")
    # the id lives in three names inside the folder: the experiment file, its scale group, experiment_id
    (new / "conf" / "experiment" / "stability_gap.yaml").rename(new / "conf" / "experiment" / "gap_copy.yaml")
    (new / "conf" / "stability_gap").rename(new / "conf" / "gap_copy")
    exp_yaml = new / "conf" / "experiment" / "gap_copy.yaml"
    exp_yaml.write_text(exp_yaml.read_text().replace("stability_gap", "gap_copy"))
    env = {**os.environ, "OPTRUN_EXPERIMENTS": str(tree / "experiments"), "PYTHONUNBUFFERED": "1"}

    p = subprocess.run([_bin("optrun"), "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0 and re.search(r"^\s+gap_copy\s", p.stdout, re.M), p.stdout

    results = tmp_path / "results"
    quick = "trainer.iters_per_task=10 seed=0 progress=false"
    p = subprocess.run([_bin("optrun"), "reproduce", "gap_copy", *quick.split(), f"results_dir={results}"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode in (0, 1), p.stderr[-3000:]
    assert "== gap_copy:" in p.stdout and (results / "gap_copy" / "report.md").is_file()
    runs = sorted(d.name for d in (results / "gap_copy").iterdir() if (d / "status.json").exists())
    assert len(runs) == 4 and all(r.split(".")[0] in ("split_digits", "rotated_digits") for r in runs), runs
    import json

    import yaml
    run_dir = results / "gap_copy" / runs[0]
    status, cfg = json.loads((run_dir / "status.json").read_text()), yaml.safe_load((run_dir / "config.yaml").read_text())
    assert status["study"] == cfg["study"] and status["arm"] == cfg["arm"] and cfg["study"] is not None
    import pandas as pd
    table = pd.read_csv(results / "gap_copy" / "runs.csv")
    assert {"study", "arm"} <= set(table.columns)
    assert "<!-- optrun:claims:smoke -->" in (new / "README.md").read_text()  # the copy's card, refreshed

    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    p = subprocess.run([make, "-C", str(tree), "gap_copy", f"VENV={Path(sys.executable).parent.parent}", "NO_INSTALL=1",
                        f"RESULTS={results}", f"ARGS={quick}"],
                       capture_output=True, text=True, env={**env, "OPTRUN_EXPERIMENTS": ""}, timeout=600)
    assert "reproduce gap_copy" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
    assert "already completed" in p.stdout and "== gap_copy:" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
