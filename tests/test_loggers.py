"""Trackers (runner.loggers) mirror metrics.csv: what TensorBoard's event reader and the MLflow client read
back must equal the file, concurrent jobs must not corrupt a shared SQLite store, and a missing package is
one line naming the extra with the run left unfinished."""
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from runner.dispatch import execute
from runner.errors import OptrunError

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parent.parent
BASE = ["trainer.steps=30", "flush_every=7", "device=cpu", "threads=1", "model.hidden=[16]"]


def _run(make_cfg, results: Path, *extra: str) -> Path:
    cfg = make_cfg(*BASE, f"results_dir={results}", *extra)
    out = results / "adhoc" / "run"
    execute(cfg, out)
    return out


def test_tensorboard_scalars_hparams_and_images_read_back(make_cfg, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from runner.loggers import TensorBoardTracker

    run = _run(make_cfg, tmp_path, "logger=tensorboard")
    metrics = pd.read_csv(run / "metrics.csv")
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    logged = events.Scalars("loss")
    assert [e.step for e in logged] == metrics["step"].tolist()
    assert np.allclose([e.value for e in logged], metrics["loss"].to_numpy(), rtol=1e-6)
    assert list((run / "hparams").rglob("events.out.tfevents.*")), "hparams (config + final metrics) not written"
    # figures become images: a tracker given a PNG writes it
    png = tmp_path / "fig.png"
    import matplotlib.pyplot as plt

    plt.figure(figsize=(2, 2)).savefig(png)
    tracker = TensorBoardTracker(tmp_path / "tb", {"seed": 0, "trainer": {"steps": 3}}, {}, None)
    tracker.finish({"status": "completed", "steps": 3, "metrics": {"loss": 0.5}}, [png])
    images = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    images.Reload()
    assert images.Tags()["images"] == ["figures/fig"]


def _mlflow_run(results: Path, run_name: str = "run"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    exp = client.get_experiment_by_name("adhoc")
    runs = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{run_name}'")
    assert len(runs) == 1
    return client, runs[0]


def test_mlflow_params_metrics_tags_and_artifacts_read_back(make_cfg, tmp_path):
    pytest.importorskip("mlflow")
    run = _run(make_cfg, tmp_path, "logger=mlflow", "study=s", "arm=a")
    metrics = pd.read_csv(run / "metrics.csv")
    client, mrun = _mlflow_run(tmp_path)
    assert mrun.info.status == "FINISHED"
    assert mrun.data.params["seed"] == "0" and mrun.data.params["trainer.steps"] == "30"
    assert mrun.data.tags["study"] == "s" and mrun.data.tags["arm"] == "a" and mrun.data.tags["status"] == "completed"
    history = sorted(client.get_metric_history(mrun.info.run_id, "loss"), key=lambda m: m.step)
    assert [m.step for m in history] == metrics["step"].tolist()
    assert np.allclose([m.value for m in history], metrics["loss"].to_numpy(), rtol=1e-6)
    artifacts = [a.path for a in client.list_artifacts(mrun.info.run_id)]
    assert "summary.json" in artifacts
    summary = json.loads((run / "summary.json").read_text())
    assert mrun.data.metrics["loss"] == pytest.approx(summary["metrics"]["loss"], rel=1e-6)


def test_two_processes_log_to_one_sqlite_store_at_once(tmp_path):
    pytest.importorskip("mlflow")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([str(Path(sys.executable).parent / "optrun"), *BASE, "trainer.steps=60", "logger=mlflow",
                               f"results_dir={tmp_path}", f"seed={s}", "progress=false"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for s in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        assert "logger=mlflow stopped" not in err, err
    for s in (0, 1):
        run_dir = next((tmp_path / "adhoc").glob(f"*seed={s}*"))
        client, mrun = _mlflow_run(tmp_path, run_dir.name)
        history = client.get_metric_history(mrun.info.run_id, "loss")
        assert len(history) == len(pd.read_csv(run_dir / "metrics.csv")) == 60


def test_missing_package_names_the_extra_and_leaves_the_run_unfinished(make_cfg, tmp_path, monkeypatch):
    import runner.loggers as loggers

    monkeypatch.setitem(loggers.EXTRAS, "tensorboard", ("no_such_module_xyz", "tensorboard"))
    with pytest.raises(OptrunError, match=r"logger=tensorboard: .*pip install -e '\.\[tensorboard\]'"):
        _run(make_cfg, tmp_path, "logger=tensorboard")
    status = json.loads((tmp_path / "adhoc" / "run" / "status.json").read_text())
    assert status["status"] == "failed" and not (tmp_path / "adhoc" / "run" / "summary.json").exists()


def test_metric_names_outside_mlflows_alphabet_are_mapped():
    from runner.loggers import flatten, mlflow_key

    assert mlflow_key("rollout_eval/test_rel_l2@200") == "rollout_eval/test_rel_l2_200"
    assert flatten({"a": {"b": 1, "c": [2, 3]}, "d": None}) == {"a.b": 1, "a.c.0": 2, "a.c.1": 3, "d": None}


def test_a_store_that_cannot_be_opened_costs_the_run_nothing(make_cfg, tmp_path, capsys):
    pytest.importorskip("mlflow")
    (tmp_path / "a_file").write_text("not a folder")
    run = _run(make_cfg, tmp_path, "logger=mlflow", f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/a_file/mlflow.db")
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert len(pd.read_csv(run / "metrics.csv")) == 30
    assert "logger=mlflow not started" in capsys.readouterr().err
