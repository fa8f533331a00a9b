"""curl_descent: flipped-neuron counts, the cross-run speed-up claim on known curves, a short
in-process run through the real config, and the paper scale's composition."""
from types import SimpleNamespace

import pandas as pd

from experiments.curl_descent import claims as curl
from runner.dispatch import execute


def _run(cfg, metrics, status="completed"):
    from runner.claims import in_study

    return SimpleNamespace(cfg=cfg, metrics=metrics, status={"status": status}, path=None, arm=cfg.get("arm"),
                           is_in=lambda study=None, arms=None: in_study(cfg, study, arms))


def test_curl_flip_counts_and_speedup_claim():
    c = {"optimizer": {"flipped": [], "flipped_fraction": [0.5, 0]}, "dataset": {"d_in": 20},
         "model": {"hidden": 199, "activation": "linear"}}
    assert curl.flipped_counts(c) == (10, 0) and curl.expanding_half(c)
    c["optimizer"] = {"flipped": [1, 0]}
    assert curl.flipped_counts(c) == (1, 0) and not curl.expanding_half(c)

    def run(seed, flips, value, study="tanh_speedup"):
        cfg = {"experiment_id": "curl_descent", "seed": seed, "optimizer": {"flipped": flips},
               "study": study, "arm": {(0, 0): "gd", (0, 1): "curl"}[tuple(flips)],
               "dataset": {"d_in": 100}, "model": {"hidden": 10, "activation": "tanh"}}
        return _run(cfg, pd.DataFrame({"step": [0, 1000], curl.TEST: [1.0, value]}))

    runs = [run(0, [0, 0], 1e-3), run(0, [0, 1], 2e-4), run(1, [0, 0], 1e-3), run(1, [0, 1], 4e-4),
            run(2, [0, 0], 1e-3), run(2, [0, 1], 9e-4)]
    row = curl.cross_run_claims(runs)[0]
    assert row["n"] == 3 and row["n_passed"] == 2 and row["passed"] and row["kind"] == "headline"
    slower = [run(0, [0, 0], 1e-3), run(0, [0, 1], 2e-4), run(1, [0, 0], 1e-3), run(1, [0, 1], 8e-4)]
    assert curl.cross_run_claims(slower)[0]["n_passed"] == 1 and not curl.cross_run_claims(slower)[0]["passed"]
    elsewhere = [run(0, [0, 0], 1e-3, study=None), run(0, [0, 1], 2e-4, study=None)]  # ad hoc runs: not read
    assert curl.cross_run_claims(elsewhere)[0]["n"] == 0


def test_curl_descent_short_run_logs_the_curl_share(make_cfg, tmp_path):
    cfg = make_cfg("experiment=curl_descent", "study=contracting", "arm=few_flips", "trainer.steps=300",
                   "optimizer.flipped=[1,0]", "device=cpu")
    summary = execute(cfg, tmp_path / "run")
    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    stats = {f"optimizer_stats/{k}" for k in ("update_cosine", "weight_norm1", "weight_norm2")}
    assert {"loss", "test_eval/test_loss"} | stats <= set(df.columns)
    assert df["optimizer_stats/weight_norm1"].dropna().std() < 1e-5  # rescaled to the initial norm after every update
    assert df["optimizer_stats/update_cosine"].dropna().abs().max() <= 1 + 1e-6
    assert [c["name"][:2] for c in summary["claims"]] == ["C1"]


def test_scales_set_the_official_training_length_and_studies_cover_the_claims(make_cfg):
    from runner import experiments

    smoke, paper = make_cfg("experiment=curl_descent"), make_cfg("experiment=curl_descent", "scale=paper")
    assert (smoke.optimizer.lr, smoke.trainer.steps, smoke.hooks.test_eval.every) == (0.25, 3000, 10)
    assert (paper.optimizer.lr, paper.trainer.steps, paper.hooks.test_eval.every) == (0.05, 100000, 100)
    assert paper.dataset.hidden == paper.model.hidden == 10 and paper.optimizer.rescale
    assert paper.dataset.n_test == 100 and paper.trainer.batch_size is None  # the argument files' test set
    arms = {(s, a): o for s, a, o in experiments.arm_runs("curl_descent", "paper")}
    assert set(arms) == {("contracting", "few_flips"), ("contracting", "many_flips"), ("expansion", "in20_hid199"),
                         ("expansion", "in50_hid169"), ("tanh_speedup", "gd"), ("tanh_speedup", "curl")}
    cfg = make_cfg(*[o.split(",")[0] if o.startswith("seed=") else o for o in arms[("tanh_speedup", "curl")]])
    assert (cfg.model.activation, cfg.dataset.n_train, list(cfg.optimizer.flipped), cfg.trainer.steps) == (
        "tanh", 2000, [0, 1], 100000)


def _grid(overrides, key="optimizer.flipped="):
    """The flipped-input counts an arm sweeps (`optimizer.flipped=[a,0],[b,0],...`)."""
    value = next(o for o in overrides if o.startswith(key))[len(key):]
    return [int(v.split(",")[0]) for v in value.strip("[]").split("],[")]


def test_paper_scale_runs_the_official_flip_grids_and_every_claim_selects_runs(make_cfg):
    """Fig. 3a's argument file: floor(k * d_in / 20) flipped inputs, k = 0..20; each claim applies to
    runs of the paper scale (C1: 0 and 1 flips, C2: 5..100, C3: 10 of 20), C4 to both speed-up arms."""
    from runner import experiments

    arms = {(s, a): o for s, a, o in experiments.arm_runs("curl_descent", "paper")}
    assert _grid(arms["expansion", "in20_hid199"]) == list(range(21))
    assert _grid(arms["expansion", "in50_hid169"]) == [k * 50 // 20 for k in range(21)]
    assert _grid(arms["contracting", "many_flips"]) == list(range(5, 101, 5))
    assert _grid(arms["contracting", "few_flips"]) == [0, 1]
    assert all("seed=0,1,2,3,4,5,6,7,8,9" in o for o in arms.values())
    applies = {c.name: 0 for c in curl.CLAIMS}
    for (study, arm), overrides in arms.items():
        if study == "tanh_speedup":
            continue
        first = [o.split("],[")[0] + "]" if o.startswith("optimizer.flipped=") else o.split(",")[0]
                 if o.startswith("seed=") else o for o in overrides]
        cfg = make_cfg(*first)  # one run of the arm, composed; the others differ only in optimizer.flipped
        assert (cfg.study, cfg.arm, cfg.scale, cfg.trainer.steps) == (study, arm, "paper", 100000)
        for k in _grid(overrides):
            plain = {"study": study, "arm": arm, "scale": "paper", "dataset": dict(cfg.dataset),
                     "model": dict(cfg.model), "optimizer": {**cfg.optimizer, "flipped": [k, 0]}}
            for c in curl.CLAIMS:
                applies[c.name] += c.relevant(plain)
    assert applies == {"C1 contracting, <= 1 flip": 2, "C2 contracting, >= 5 flips": 20,
                       "C3 expanding, 50% flipped": 1}
    assert curl.SPEEDUP_STUDY == "tanh_speedup" and {("tanh_speedup", "gd"), ("tanh_speedup", "curl")} <= set(arms)
