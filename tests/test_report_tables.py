"""Reporter tables: config flattening, aggregation over seeds and sweeps, robustness to bad run folders."""
import json
import os
import time

import numpy as np
import pandas as pd
import pytest
from report_trees import toy_cfg, toy_metrics, toy_sweep, write_run

from runner.report.runs import load_runs
from runner.report.table import (
    aggregate,
    curve_stats,
    flatten_config,
    group_by_setting,
    runs_table,
    setting_columns,
    steps_table,
    write_table,
)


def test_flatten_config_dotted_keys_lists_as_text():
    flat = flatten_config({"a": {"b": 1, "c": {"d": "x"}}, "l": [1, 2], "e": {}, "n": None})
    assert flat == {"a.b": 1, "a.c.d": "x", "l": "[1, 2]", "e": "{}", "n": None}


def test_aggregate_over_seeds_for_every_swept_setting(tmp_path):
    toy_sweep(tmp_path, "toy")
    runs, skipped = load_runs(tmp_path)
    assert len(runs) == 12 and not skipped
    table = runs_table(runs)
    assert {"cfg.optimizer.lr", "cfg.trainer.method", "cfg.trainer.hidden", "final.loss", "seed"} <= set(table.columns)
    # seed, results_dir and device never define a setting; constant keys do not either
    assert setting_columns(table) == ["cfg.optimizer.lr", "cfg.trainer.method"]
    agg = aggregate(table)
    assert len(agg) == 4 and set(agg.setting) == {f"lr={lr}, method={m}" for lr in (0.05, 0.2) for m in "ab"}
    row = agg[(agg["cfg.optimizer.lr"] == 0.05) & (agg["cfg.trainer.method"] == "a")].iloc[0]
    finals = [toy_metrics(0.05, s).loss.iloc[-1] for s in (0, 1, 2)]
    assert row["loss.mean"] == pytest.approx(np.mean(finals))
    assert row["loss.sd"] == pytest.approx(np.std(finals, ddof=1))
    assert row["loss.n"] == 3 and row["n_runs"] == 3 and row["seeds"] == "0 1 2"


def test_diverged_runs_are_counted_not_averaged(tmp_path):
    toy_sweep(tmp_path, "toy", lrs=(0.1,), methods=("a",), seeds=(0, 1))
    bad = toy_metrics(0.1, 2).iloc[:11].copy()
    bad.loc[10, "loss"] = np.inf
    write_run(tmp_path, "toy", "seed=2", toy_cfg(0.1, "a", 2), bad, status="diverged", diverged_at=10)
    runs, _ = load_runs(tmp_path)
    assert [r.diverged_at for r in runs if r.diverged] == [10]
    agg = aggregate(runs_table(runs))
    assert len(agg) == 1
    row = agg.iloc[0]
    assert (row.n_runs, row.n_completed, row.n_diverged, row["loss.n"]) == (3, 2, 1, 2)


def test_setting_label_leaves_out_columns_that_follow_from_others(tmp_path):
    for s in (0, 1):
        cfg = toy_cfg(0.1, "a", s)
        write_run(tmp_path, "toy", f"split,seed={s}", {**cfg, "dataset": {"_target_": "pkg.split", "n_tasks": 5}},
                  toy_metrics(0.1, s))
        write_run(tmp_path, "toy", f"rot,seed={s}", {**cfg, "dataset": {"_target_": "pkg.rotated", "angles": [0, 90]}},
                  toy_metrics(0.1, s))
    runs, _ = load_runs(tmp_path)
    assert sorted(group_by_setting(runs)) == ["dataset=rotated", "dataset=split"]
    assert all(len(v) == 2 for v in group_by_setting(runs).values())


def test_steps_table_and_curve_stats(tmp_path):
    toy_sweep(tmp_path, "toy", lrs=(0.1,), methods=("a", "b"), seeds=(0, 1, 2))
    runs, _ = load_runs(tmp_path)
    steps = steps_table(runs)
    assert len(steps) == 6 * 41 and {"run", "seed", "setting", "cfg.trainer.method", "loss"} <= set(steps.columns)
    a = [r for r in runs if r.cfg["trainer"]["method"] == "a"]
    stats = curve_stats(a, "loss")
    expect = np.mean([toy_metrics(0.1, s).loss for s in (0, 1, 2)], axis=0)
    assert np.allclose(stats["mean"], expect) and (stats["n"] == 3).all()
    geo = curve_stats(a, "loss", log=True)
    expect_geo = np.exp(np.mean([np.log(toy_metrics(0.1, s).loss) for s in (0, 1, 2)], axis=0))
    assert np.allclose(geo["mean"], expect_geo) and (geo["lo"] < geo["mean"]).all() and (geo["hi"] > geo["mean"]).all()


def test_write_table_round_trips_as_csv(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    written = write_table(df, tmp_path / "t.csv")
    assert written[0] == tmp_path / "t.csv"
    assert pd.read_csv(written[0]).a.tolist() == [1, 2]


def test_write_table_adds_parquet_when_pyarrow_is_there(tmp_path):
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"a": [1, 2], "b": ["x", None], "c": [[1], "y"]})
    written = write_table(df, tmp_path / "t.csv")
    assert written == [tmp_path / "t.csv", tmp_path / "t.parquet"]
    assert pd.read_parquet(written[1]).a.tolist() == [1, 2]


# --- robustness: every bad folder is named with its reason; the good runs are still read ----------

def _bad_trees(root):
    """name -> (writer, expected words in the reason, or None when the run is read with a note)."""
    good = toy_metrics(0.1, 0)
    cfg = toy_cfg(0.1, "a", 0)

    def w(name, **kw):
        return write_run(root, "toy", name, cfg, kw.pop("metrics", good), **kw)

    def running(name):
        w(name, status="running")

    def stale(name):
        d = w(name, status="running", updated=time.time() - 10 * 3600)
        for f in d.iterdir():
            os.utime(f, (time.time() - 10 * 3600,) * 2)

    def failed(name):
        w(name, status="failed", error="OptrunError: out of memory")

    def no_status(name):
        (w(name) / "status.json").unlink()

    def bad_status(name):
        (w(name) / "status.json").write_text('{"status": "compl')

    def bad_yaml(name):
        (w(name) / "config.yaml").write_text("a: [1, 2\nb: {")

    def no_config(name):
        (w(name) / "config.yaml").unlink()

    def no_metrics(name):
        (w(name) / "metrics.csv").unlink()

    def empty_metrics(name):
        (w(name) / "metrics.csv").write_text("")

    def header_only(name):
        (w(name) / "metrics.csv").write_text("step,task,time_s,loss\n")

    def truncated(name):
        d = w(name)
        good.iloc[:20].to_csv(d / "metrics.csv", index=False)

    def half_line(name):
        d = w(name, status="diverged", diverged_at=40)
        (d / "metrics.csv").write_text(good.to_csv(index=False) + "41,1,0.4,0.12")

    def garbage_cell(name):
        d = w(name)
        text = good.to_csv(index=False).splitlines()
        text[5] = "4,1,0.04,@@@,97.0"
        (d / "metrics.csv").write_text("\n".join(text) + "\n")

    def extra_fields(name):
        d = w(name)
        text = good.to_csv(index=False).splitlines()
        text[3] = "2,1,0.02,0.8,60,1,2,3"
        (d / "metrics.csv").write_text("\n".join(text) + "\n")

    def binary(name):
        (w(name) / "metrics.csv").write_bytes(b"\x00\xff\xfe\x81garbage")

    def no_step(name):
        (w(name) / "metrics.csv").write_text("loss\n1.0\n")

    def no_summary(name):
        (w(name) / "summary.json").unlink()

    def bad_summary(name):
        (w(name) / "summary.json").write_text("[1, 2")

    return {
        "running": (running, "still running"), "stale": (stale, "probably killed"),
        "failed": (failed, "out of memory"), "no_status": (no_status, "no status.json"),
        "bad_status": (bad_status, "status.json is unreadable"), "bad_yaml": (bad_yaml, "config.yaml is unreadable"),
        "no_config": (no_config, "no config.yaml"), "no_metrics": (no_metrics, "no metrics.csv"),
        "empty_metrics": (empty_metrics, "metrics.csv is empty"), "header_only": (header_only, "no rows"),
        "truncated": (truncated, "truncated"), "binary": (binary, "metrics.csv"),
        "no_step": (no_step, "no 'step' column"),
        "half_line": (half_line, None), "garbage_cell": (garbage_cell, None), "extra_fields": (extra_fields, None),
        "no_summary": (no_summary, None), "bad_summary": (bad_summary, None),
    }


def test_every_bad_folder_is_named_with_a_reason(tmp_path):
    cases = _bad_trees(tmp_path)
    for name, (make, _) in cases.items():
        make(name)
    toy_sweep(tmp_path, "toy", lrs=(0.3,), methods=("a",), seeds=(0, 1))
    runs, skipped = load_runs(tmp_path)
    reasons = {s.path.name: s.reason for s in skipped}
    for name, (_, words) in cases.items():
        if words is None:
            assert name not in reasons, (name, reasons.get(name))
        else:
            assert words in reasons.get(name, ""), (name, reasons.get(name))
    notes = {r.name: " ".join(r.notes) for r in runs}
    assert "half-written last line" in notes["half_line"]
    assert "unparsable value" in notes["garbage_cell"]
    assert "malformed row" in notes["extra_fields"]
    assert "no summary.json" in notes["no_summary"] and "summary.json is unreadable" in notes["bad_summary"]
    read = {r.name: r for r in runs}
    assert np.isnan(read["garbage_cell"].metrics.loss.iloc[4]) and len(read["extra_fields"].metrics) == 40
    assert read["half_line"].metrics.step.max() == 40
    assert {"lr=0.3,method=a,seed=0", "lr=0.3,method=a,seed=1"} <= set(read)
    # final metrics fall back to metrics.csv when summary.json is missing
    table = runs_table(runs).set_index("run")
    assert table.loc["no_summary", "final.loss"] == pytest.approx(toy_metrics(0.1, 0).loss.iloc[-1])
    json.dumps([s.reason for s in skipped])  # reasons are plain text
