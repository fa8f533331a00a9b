"""The catalogue of bad input: each gets one clear line, a documented exit code, and no traceback.

Exit codes: 0 ok (also: diverged, already finished, skipped in a sweep), 2 bad input or an
unrecoverable run problem (message names the key or path), 3 the run is held by another live
process. Anything else would be a bug.
"""
import io
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import cli
from runner.config_check import check_overrides
from runner.dispatch import execute
from runner.errors import OptrunError


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["optrun", *argv]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("overrides, fragment", [
    (["experiment=nope"], "experiment=nope: no such option"),
    (["model=nope"], "model=nope: no such option"),
    (["optimizer=nope"], "optimizer=nope: no such option"),
    (["trainer.lrr=1"], "trainer.lrr: unknown key"),
    (["optimizer.lr=abc"], "optimizer.lr='abc': expected a number"),
    (["results_dir=/etc/passwd/sub"], "results_dir=/etc/passwd/sub: cannot write there"),
    (["log_every=1,2"], "log_every=1,2: a sweep needs -m"),
])
def test_config_mistakes_are_caught_before_anything_runs(overrides, fragment, tmp_path):
    code, out, err = run_cli([*overrides, f"hydra.run.dir={tmp_path}/x"]) if "results_dir" not in overrides[0] \
        else run_cli(overrides)
    assert code == 2 and fragment in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("overrides, fragment", [
    (["trainer.batch_size=0"], "trainer.batch_size: expected a positive integer"),
    (["trainer.iters_per_task=-5"], "iters_per_task"),
    (["trainer.memory_size=0"], "trainer.memory_size: expected a positive integer"),
    (["model.hidden=[64,0]"], "model.hidden: expected positive layer widths"),
    (["dataset.n_tasks=3"], "dataset.n_tasks: expected a positive divisor"),
    (["hooks.continual_eval.max_samples=0"], "max_samples: expected a positive integer"),
    (["dataset=split_mnist", "dataset.base.data_dir=/nonexistent"], "/nonexistent"),
    (["device=cuda"], "CUDA is not available"),
    (["checkpoint.every_steps=0"], "checkpoint.every_steps: expected a positive integer"),
])
def test_impossible_values_fail_the_run_with_one_line(make_cfg, overrides, fragment, tmp_path):
    if "device=cuda" in overrides:
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    cfg = make_cfg("experiment=stability_gap", *overrides)
    with pytest.raises(OptrunError) as e:
        execute(cfg, tmp_path / "run")
    assert fragment in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run" / "summary.json").exists()


KEYS = ["seed", "optimizer.lr", "trainer.batch_size", "trainer.method", "model.hidden", "experiment", "optimizer",
        "scale", "device", "force", "hooks", "dataset", "trainer.lw_new", "nonsense", "optimizer.lrr", "+new.key",
        "~seed", "log_every", "results_dir"]
VALUES = st.one_of(st.integers(-5, 5).map(str), st.floats(-1e3, 1e3, allow_nan=False).map(repr),
                   st.sampled_from(["abc", "true", "null", "[1,2]", "[a", "sgd", "stability_gap", "er", "paper", "''",
                                    "{a: 1}", "1,2", "${seed}", "a b", "=", "[]", "cpu"]),
                   st.text(alphabet="abc012=,[]{}$'\" .-_/", max_size=8))
OVERRIDE = st.one_of(st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
                     st.text(alphabet="abcxyz=.,[]+~", min_size=1, max_size=12))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OVERRIDE, max_size=3))
def test_random_overrides_never_reach_the_user_as_a_traceback(overrides):
    """Without running anything (`--cfg job` prints the config): exit 0, or exit 2 with one line."""
    overrides = [o for o in overrides if not o.startswith("results_dir=") and not o.startswith("-")]
    code, out, err = run_cli([*overrides, "--cfg", "job"])
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.startswith("optrun: error: ") and err.count("\n") == 1


def test_check_accepts_sweeps_and_additions():
    check_overrides(["seed=0,1", "+new.key=3", "trainer.method=er,finetune", "experiment=stability_gap"])
