"""ghosts_softmax: every sub-experiment composes at both scales (ResNet-18 on CIFAR-10 for the resnet part),
the studies declare the old Makefile's runs, tiny runs of each write the files the claims and figures read,
and the cross-run claims compute what they say."""
import math

import pandas as pd
import pytest
from hydra.utils import instantiate

from experiments.ghosts_softmax import claims, plots
from runner import experiments
from runner.dispatch import execute
from runner.report.runs import Run, load_runs

PARTS = ["spike", "rsweep", "temperature", "resnet"]


@pytest.mark.parametrize("sub", PARTS)
@pytest.mark.parametrize("scale", ["smoke", "paper"])
def test_every_part_composes(make_cfg, sub, scale):
    cfg = make_cfg("experiment=ghosts_softmax", f"ghosts_softmax={sub}", f"scale={scale}")
    assert cfg.part == sub and cfg.scale == scale
    instantiate(cfg.trainer)
    if sub == "resnet":  # the part switches dataset, model and optimizer (the experiment file overrides none)
        assert cfg.dataset.name == "cifar10" and cfg.model._target_ == "runner.models.resnet.resnet18"
        assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.momentum == 0.9
        assert cfg.hooks.radius.mode == "set" and cfg.trainer.epochs == 10
    else:
        assert cfg.dataset.name == "digits" and cfg.optimizer._target_ == "torch.optim.Adam"


def test_paper_scale_studies():
    """Per-part paper settings are study overrides: the r-sweep's 20 random directions and 384 probe samples."""
    smoke, paper = (experiments.studies("ghosts_softmax", s) for s in ("smoke", "paper"))
    assert set(smoke) == {"spike_held", "spike_1step", "rsweep", "temperature"}
    assert set(paper) == set(smoke) | {"resnet"}
    assert list(paper["rsweep"]["arms"]) == list(claims.ARCHITECTURES)
    runs = {(s, a): o for s, a, o in experiments.arm_runs("ghosts_softmax", "paper")}
    cfg = experiments.compose([o for o in runs[("rsweep", "mlp_ln")] if "," not in o])
    assert cfg.hooks.step_sweep.n_random == 20 and cfg.hooks.step_sweep.max_samples == 384
    assert cfg.model.layer_norm and cfg.study == "rsweep" and cfg.arm == "mlp_ln"
    cfg = experiments.compose([o for o in runs[("resnet", "fixed_lr")] if "," not in o])
    assert cfg.model._target_ == "runner.models.resnet.resnet18" and not cfg.hooks.radius.controller


def test_paper_settings_of_the_spike(make_cfg):
    cfg = make_cfg("experiment=ghosts_softmax")
    assert list(cfg.model.hidden) == [128] and cfg.optimizer._target_ == "torch.optim.Adam"
    assert cfg.trainer.batch_size == 64 and cfg.trainer.steps == 200
    assert cfg.schedule.start == 50 and cfg.schedule.factor == 1000 and cfg.schedule.length is None
    assert cfg.hooks.radius.probe == "train" and cfg.hooks.radius.max_samples is None


TINY = {
    "spike": ["study=spike_held", "arm=controller", "trainer.steps=12", "schedule.start=4",
              "hooks.radius.controller=true"],
    "rsweep": ["study=rsweep", "arm=linear", "ghosts_softmax=rsweep", "model=linear", "trainer.steps=10",
               "hooks.step_sweep.n_r=7", "hooks.step_sweep.n_random=2", "hooks.step_sweep.max_samples=64"],
    "temperature": ["study=temperature", "arm=mlp_gelu", "ghosts_softmax=temperature", "trainer.steps=10",
                    "trainer.temperature=2", "hooks.step_sweep.n_r=9"],
}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ghosts") / "ghosts_softmax"
    for name, overrides in TINY.items():
        cfg = experiments.compose(["experiment=ghosts_softmax", "progress=false", "device=cpu", *overrides])
        execute(cfg, root / name)
    runs, skipped = load_runs(root)
    assert not skipped
    return root, {r.path.name: r for r in runs}


def test_tiny_runs_log_what_claims_and_figures_read(tiny_runs):
    root, runs = tiny_runs
    spike = runs["spike"].metrics
    assert {f"radius/{c}" for c in ("tau", "rho_a", "r", "r_raw", "scale", "delta_a", "lr")} <= set(spike.columns)
    assert claims.TEST_ACC in spike.columns
    assert spike[claims.R].max() <= 1 + 1e-6 and spike["radius/lr"].iloc[-1] == pytest.approx(10.0)
    for name, run in runs.items():
        assert run.status["status"] == "completed"
        assert not [c for c in run.summary["claims"] if "error" in c], name
        assert (run.path / ("spike.png" if name == "spike" else "sweep.png")).exists()
    sweep = runs["rsweep"].metrics
    descent = claims.curve(sweep, "ratio_descent")
    assert len(descent) == 7 and descent.index[0] == pytest.approx(0.1) and descent.index[-1] == pytest.approx(10.0)
    assert len(claims.curve(sweep, "ratio_randmax")) == 7
    assert {f"step_sweep/{c}" for c in ("onset_descent", "tau_onset_descent", "rho_random")} <= set(sweep.columns)
    assert not [c for c in sweep.columns if c.startswith("step_sweep/ratio_")]  # curves are arrays, not columns
    with pytest.raises(KeyError):  # a direction the temperature sweep does not take
        claims.curve(runs["temperature"].metrics, "ratio_random")
    assert [c["name"][:2] for c in runs["rsweep"].summary["claims"]] == ["R1", "R2", "R3"]
    assert [c["name"][:2] for c in runs["spike"].summary["claims"]] == ["S1", "S4"]
    figures = plots.plot_report(list(runs.values()), root)
    assert {p.name for p in figures} == {"ghosts_softmax_spike.png", "ghosts_softmax_rsweep_loss.png",
                                         "ghosts_softmax_rsweep_acc.png", "ghosts_softmax_temperature.png"}


def _temperature_run(T, seed, onset_r, rho):
    metrics = pd.DataFrame({"step": [0, 1], "step_sweep/onset_descent": [math.nan, onset_r],
                            "step_sweep/tau_onset_descent": [math.nan, onset_r * rho]})
    cfg = {"part": "temperature", "study": "temperature", "arm": "mlp_gelu", "seed": seed,
           "trainer": {"temperature": T}}
    return Run(path=None, cfg=cfg, status={"status": "completed"}, summary={}, metrics=metrics)


def test_temperature_claim_compares_log_spreads():
    # rho grows like T and the onset in r is the same: the raw thresholds spread, the normalised ones do not
    runs = [_temperature_run(T, s, 1.5 + 0.01 * s, 0.1 * T) for T in (0.5, 1, 2, 4) for s in (0, 1)]
    (row,) = claims.cross_run_claims(runs)
    assert row["name"].startswith("T1") and row["kind"] == "headline" and row["passed"] and row["measured"] == pytest.approx(0.0, abs=1e-12)
    # if rho does not depend on T either, normalising changes nothing: ratio 1, the claim fails
    runs = [_temperature_run(T, 0, 1.5 * T, 0.1) for T in (0.5, 1, 2, 4)]
    (row,) = claims.cross_run_claims(runs)
    assert row["measured"] == pytest.approx(1.0) and not row["passed"]


def test_architecture_coverage_claim():
    """R0 reads the r-sweep study's arms (one per architecture)."""
    def run(arch, study="rsweep"):
        return Run(path=None, cfg={"part": "rsweep", "study": study, "arm": arch}, status={"status": "completed"},
                   summary={})

    archs = list(claims.ARCHITECTURES)
    (row,) = claims.cross_run_claims([run(a) for a in archs])
    assert row["passed"] and row["measured"] == 6 and row["kind"] == "check"
    (row,) = claims.cross_run_claims([run(a) for a in archs[:-1]] + [run("transformer", study=None)])
    assert not row["passed"] and "transformer" in row["note"]


def test_issue16_kinds_and_paper_numbers():
    """S4 (r <= 1 under the controller) is a check; R3 counts a transition at the paper's loss ratio of 2
    (not the failure ratio 1.1); T1 shows the paper's ratio beside our margin."""
    by = {c.name.split()[0]: c for c in claims.CLAIMS}
    assert by["S4"].kind == "check"
    assert not by["R3"].check(1.5) and by["R3"].check(2.5) and "> 2" in by["R3"].criterion
    assert claims.T1_PAPER_RATIO == pytest.approx(0.165, abs=1e-3)
    runs = [_temperature_run(T, s, 1.5 + 0.01 * s, 0.1 * T) for T in (0.5, 1, 2, 4) for s in (0, 1)]
    (row,) = claims.cross_run_claims(runs)
    assert "0.17" in row["paper"] and "0.17" in row["criterion"] and "0.17" in row["note"]
