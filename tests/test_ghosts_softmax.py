"""ghosts_softmax: every sub-experiment composes at both scales (ResNet-18 on CIFAR-10 for the resnet part),
the studies declare the paper's runs, tiny runs of each write the files the claims and figures read, the
one-step sweep's loss ratio matches a direct computation, and the claims compute what they say."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from experiments.ghosts_softmax import claims, plots
from experiments.ghosts_softmax.checkpoints import CheckpointSweep
from runner import experiments
from runner.dispatch import execute
from runner.errors import OptrunError
from runner.metrics.radius import logit_jvp, radius
from runner.models.mlp import MLP
from runner.report.runs import Run, load_runs

PARTS = ["spike", "rsweep", "randdirs", "phase_ln", "temperature", "resnet"]


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
    elif sub == "randdirs":  # Figure 8: linear classifier, plain SGD at 0.1, checkpoints after 30/180/700 updates
        assert cfg.dataset.name == "digits" and list(cfg.model.hidden) == [] and cfg.trainer.batch_size == 64
        assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.1 and cfg.optimizer.momentum == 0
        sweep = cfg.hooks.step_sweep
        assert list(sweep.at_steps) == [30, 180, 700] and cfg.trainer.steps == 700 and sweep.n_random == 20
        assert set(sweep.directions) == {"ascent", "descent", "random"} and sweep.max_samples is None
    elif sub == "phase_ln":  # the official phase-transition script's MLP+LN
        assert list(cfg.model.hidden) == [128, 128] and cfg.model.layer_norm and cfg.model.activation == "gelu"
        assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.optimizer.lr == 2.5e-3
        assert cfg.optimizer.weight_decay == 1e-4 and cfg.trainer.batch_size == 128 and cfg.trainer.steps == 750
        sweep = cfg.hooks.step_sweep
        assert list(sweep.acc_targets) == [0.84, 0.95, 0.98] and sweep.check_every == 10 and sweep.max_samples == 384
        assert (sweep.r_min, sweep.r_max, sweep.n_r, sweep.n_random) == (1e-3, 35.0, 42, 20)
    else:
        assert cfg.dataset.name == "digits" and cfg.optimizer._target_ == "torch.optim.Adam"


def test_paper_scale_studies():
    """Per-part paper settings are study overrides: the r-sweep's 20 random directions and 384 probe samples."""
    smoke, paper = (experiments.studies("ghosts_softmax", s) for s in ("smoke", "paper"))
    assert set(smoke) == {"spike_held", "spike_1step", "rsweep", "randdirs", "phase_ln", "temperature"}
    assert set(paper) == set(smoke) | {"resnet"}
    assert list(paper["rsweep"]["arms"]) == list(claims.ARCHITECTURES)
    runs = {(s, a): o for s, a, o in experiments.arm_runs("ghosts_softmax", "paper")}
    cfg = experiments.compose([o for o in runs[("rsweep", "mlp_ln")] if "," not in o])
    assert cfg.hooks.step_sweep.n_random == 20 and cfg.hooks.step_sweep.max_samples == 384
    assert cfg.model.layer_norm and cfg.study == "rsweep" and cfg.arm == "mlp_ln"
    cfg = experiments.compose([o for o in runs[("resnet", "fixed_lr")] if "," not in o])
    assert cfg.model._target_ == "runner.models.resnet.resnet18" and not cfg.hooks.radius.controller
    # the fixed learning rates of Table 3, and the rho-set targets; r = 1 is the one the ResNet claim reads
    assert "optimizer.lr=0.005,0.01,0.1,0.5" in runs[("resnet", "fixed_lr")]
    assert "hooks.radius.target_r=0.5,1,2,4" in runs[("resnet", "rho_set")]
    assert "seed=0,1,2,3" in runs[("phase_ln", "mlp_ln")] and "seed=0,1,2,3,4" in runs[("randdirs", "linear_sgd")]


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
    "randdirs": ["study=randdirs", "arm=linear_sgd", "ghosts_softmax=randdirs", "trainer.steps=12",
                 "hooks.step_sweep.at_steps=[3,12]", "hooks.step_sweep.n_r=21", "hooks.step_sweep.n_random=3"],
    # targets 0 (reached at the first check, update 10) and 1 (never: swept on the final model)
    "phase_ln": ["study=phase_ln", "arm=mlp_ln", "ghosts_softmax=phase_ln", "trainer.steps=25",
                 "hooks.step_sweep.acc_targets=[0.0,1.0]", "hooks.step_sweep.n_r=9", "hooks.step_sweep.n_random=3"],
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
        assert not list(run.path.glob("*.png")), name  # a study's runs are drawn in the report's figures only
    sweep = runs["rsweep"].metrics
    descent = claims.curve(sweep, "ratio_descent")
    assert len(descent) == 7 and descent.index[0] == pytest.approx(0.1) and descent.index[-1] == pytest.approx(10.0)
    assert len(claims.curve(sweep, "ratio_randmax")) == 7
    assert {f"step_sweep/{c}" for c in ("onset_descent", "tau_onset_descent", "rho_random")} <= set(sweep.columns)
    assert not [c for c in sweep.columns if c.startswith("step_sweep/ratio_")]  # curves are arrays, not columns
    with pytest.raises(KeyError):  # a direction the temperature sweep does not take
        claims.curve(runs["temperature"].metrics, "ratio_random")
    assert [c["name"][:2] for c in runs["rsweep"].summary["claims"]] == ["R1", "R3"]
    assert [c["name"][:2] for c in runs["spike"].summary["claims"]] == ["S1", "S4"]
    assert runs["randdirs"].summary["claims"] == runs["phase_ln"].summary["claims"] == []  # cross-run only
    figures = plots.plot_report(list(runs.values()), root)
    assert {p.name for p in figures} == {"ghosts_softmax_spike.png", "ghosts_softmax_rsweep_loss.png",
                                         "ghosts_softmax_rsweep_acc.png", "ghosts_softmax_randdirs.png",
                                         "ghosts_softmax_phase_ln.png", "ghosts_softmax_temperature.png"}
    # a run made by hand (no study) gets its own figure
    for name in ("rsweep", "randdirs", "spike"):
        cfg = {**runs[name].cfg, "study": None}
        assert plots.plot_run(runs[name].metrics, cfg, root / name).name in ("sweep.png", "spike.png")


def test_checkpoint_sweeps_log_every_checkpoint(tiny_runs):
    """randdirs sweeps after the given updates; phase_ln when the test accuracy first reaches each target (checked
    every 10 updates), and on the final model for a target never reached; every random curve is kept."""
    _, runs = tiny_runs
    rd = claims.sweeps(runs["randdirs"].metrics)
    assert [s["step"] for s in rd] == [3, 12]
    for s in rd:
        assert s["random_all"].shape == (3, 21) and {"ascent", "descent", "random"} <= set(s)
        np.testing.assert_allclose(s["random"], np.median(s["random_all"], axis=0))
        assert claims.at_r(s["r"], s["ascent"]) > 0
    ph = claims.sweeps(runs["phase_ln"].metrics)
    assert [s["step"] for s in ph] == [10, 25] and [s["weight"] for s in ph] == [1, 1]
    assert runs["phase_ln"].metrics["step_sweep/test_acc"].notna().sum() == 3  # updates 10, 20 and the end
    names = [r["name"][:3] for r in claims.cross_run_claims(list(runs.values()))]
    assert names[:3] == ["R2 ", "R2b", "R4 "]
    with pytest.raises(OptrunError):
        CheckpointSweep(at_steps=[1], acc_targets=[0.5])


def test_sweep_loss_ratio_matches_a_direct_computation():
    """On a linear classifier the sweep's loss ratio is CE(W' x + b') / CE(W x + b) with (W', b') = (W, b) + tau v,
    tau = r * rho_a, and rho_a = pi / max_x (max_k a_k - min_k a_k) with a = V x + c."""
    torch.manual_seed(0)
    model = MLP((1, 2, 3), 4, hidden=[])
    x, y = torch.randn(50, 1, 2, 3), torch.randint(0, 4, (50,))
    params = {k: p.detach() for k, p in model.named_parameters()}
    v = {k: torch.randn_like(p) for k, p in params.items()}
    norm = math.sqrt(sum(float((t ** 2).sum()) for t in v.values()))
    v = {k: t / norm for k, t in v.items()}
    hook = CheckpointSweep(at_steps=[1], r_min=0.1, r_max=10.0, n_r=5)
    hook.x, hook.y, hook._ratios = x, y, []
    (w, b), (vw, vb) = (params["net.1.weight"], params["net.1.bias"]), (v["net.1.weight"], v["net.1.bias"])
    a = x.flatten(1) @ vw.T + vb
    rho = math.pi / float((a.amax(1) - a.amin(1)).max())
    assert float(radius(logit_jvp(model, params, v, x)[1])[1]) == pytest.approx(rho, rel=1e-6)
    ratio, _ = hook._curve(model, params, v, rho, float(F.cross_entropy(x.flatten(1) @ w.T + b, y)),
                           lambda z, t: F.cross_entropy(z, t))
    xd, yd = x.flatten(1).double(), y
    base = F.cross_entropy(xd @ w.double().T + b.double(), yd)
    direct = [F.cross_entropy(xd @ (w + r * rho * vw).double().T + (b + r * rho * vb).double(), yd) / base
              for r in hook.r]
    np.testing.assert_allclose(ratio, np.array([float(d) for d in direct]), rtol=1e-5)
    assert len(hook._ratios) == 1


def test_crossing_statistics_on_synthetic_curves():
    r = np.logspace(-1, 2, 61)
    power = (r / 0.5) ** 2  # log-log linear: the interpolated crossing of 2 is exact
    assert claims.crossing(r, power, 2.0) == pytest.approx(0.5 * math.sqrt(2), rel=1e-9)
    assert claims.crossing(r, np.ones_like(r), 2.0) == math.inf  # never on the grid: beyond r_max
    bump = 1 + (r / 3.0) ** 3
    assert claims.crossing(r, bump, 2.0) == pytest.approx(3.0, rel=0.02)
    # the official onset: the first grid point at or above the level
    first = claims.first_grid_crossing(r, bump, 2.0)
    assert first in r and first >= 3.0 and r[np.searchsorted(r, first) - 1] < 3.0
    assert math.isnan(claims.first_grid_crossing(r, np.ones_like(r), 1.1))
    assert claims.at_r(r, bump) == pytest.approx(1 + 1 / 27, rel=1e-9)


def _sweep_run(study, steps, random, ascent, weights=None, all_random=None):
    """A fake checkpoint-sweep run: the arrays live in a temporary run folder (runner.arrays)."""
    import tempfile
    from pathlib import Path

    from runner.arrays import ArrayStore

    folder = Path(tempfile.mkdtemp())
    store = ArrayStore(folder / "arrays")
    grid = np.logspace(-1, 2, 61)
    for i, step in enumerate(steps):
        store.add("step_sweep/r", step, grid)
        store.add("step_sweep/ratio_random", step, random[i](grid))
        store.add("step_sweep/ratio_ascent", step, ascent[i](grid))
        if all_random is not None:
            store.add("step_sweep/ratio_random_all", step, np.stack([f(grid) for f in all_random[i]]))
    store.flush()
    metrics = pd.DataFrame({"step": list(steps), "step_sweep/checkpoints": weights or [1] * len(steps),
                            "step_sweep/probe_acc": [90.0] * len(steps)})
    metrics.attrs["run_dir"] = str(folder)
    cfg = {"part": study, "study": study, "arm": "x", "seed": 0}
    return Run(path=folder, cfg=cfg, status={"status": "completed"}, summary={}, metrics=metrics)


def test_random_direction_claims_read_the_crossings():
    late = lambda c: (lambda r: (r / c) ** 2)  # noqa: E731 -- crosses 2 at c * sqrt(2)
    ok = _sweep_run("randdirs", [30, 180, 700], [late(2.0)] * 3, [late(1.0)] * 3,
                    all_random=[[late(1.5), late(2.0), late(2.5)]] * 3)
    r2, r2b = claims.cross_run_claims([ok])
    assert r2["name"].startswith("R2 ") and r2["passed"] and r2["n"] == 3
    assert r2["measured"] == pytest.approx(2 * math.sqrt(2)) and "1.08/1.14/1.20" in r2["paper"]
    assert r2b["passed"] and r2b["measured"] == pytest.approx(0.5) and "1.50/1.48/1.59" in r2b["paper"]
    assert "official" in r2["note"]
    # a median crossing below r = 1 fails R2 at that checkpoint; +grad crossing after the median random
    # direction fails R2b (at the mid checkpoint, where random crosses at 0.71, and at the late one)
    bad = _sweep_run("randdirs", [30, 180, 700], [late(2.0), late(0.5), late(2.0)], [late(1.0), late(1.0), late(4.0)])
    r2, r2b = claims.cross_run_claims([bad])
    assert not r2["passed"] and r2["n_passed"] == 2 and not r2b["passed"] and r2b["n_passed"] == 1


def test_onset_fraction_claim_counts_checkpoints():
    at = lambda c: (lambda r: 1.1 * (r / c) ** 4)  # noqa: E731 -- reaches 1.1 at r = c (first grid point >= c)
    run = _sweep_run("phase_ln", [10, 40], [at(0.9), at(0.3)], [at(0.2), at(0.2)], weights=[2, 1])
    (row,) = claims.cross_run_claims([run])
    assert row["name"].startswith("R4") and row["kind"] == "supporting"
    assert row["measured"] == pytest.approx(2 / 3) and row["passed"] and "2 of 3" in row["note"]
    run = _sweep_run("phase_ln", [10], [at(0.3)], [at(0.2)])
    (row,) = claims.cross_run_claims([run])
    assert row["measured"] == 0 and not row["passed"]


def test_resnet_claim_compares_rho_set_with_the_best_fixed_lr():
    def run(arm, value, lr=0.1, target=1.0):
        cfg = {"part": "resnet", "study": "resnet", "arm": arm, "optimizer": {"lr": lr},
               "hooks": {"radius": {"target_r": target}}}
        return Run(path=None, cfg=cfg, status={"status": "completed"}, summary={},
                   metrics=pd.DataFrame({"step": [1], claims.TEST_ACC: [value]}))

    runs = [run("rho_set", 85.0), run("rho_set", 70.0, target=4.0), run("fixed_lr", 82.0, lr=0.01),
            run("fixed_lr", 78.0, lr=0.1)]
    (row,) = claims.cross_run_claims(runs)
    assert row["name"].startswith("RN") and row["passed"] and row["measured"] == pytest.approx(3.0)
    assert "85.3" in row["paper"] and "82.6" in row["paper"]
    (row,) = claims.cross_run_claims(runs + [run("fixed_lr", 86.0, lr=0.005)])
    assert not row["passed"]


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
