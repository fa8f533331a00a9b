"""The benchmark harness (rows, targets, raw files, BENCH.md, isolation of a failing benchmark) and
the hot-path pieces it measured into the core (deferred accuracy, batched metric resolution,
precision). Speed itself is never asserted here."""
import csv
import json
import math

import pandas as pd
import pytest
import torch

from bench import harness
from bench.bench_smoke import breakdown, make_targets
from runner import bench
from runner.dispatch import build
from runner.engine import Engine
from runner.errors import OptrunError
from runner.results import MetricsWriter, PercentEqual
from runner.trainers.base import accuracy, logged_accuracy


def test_record_writes_the_row_schema_and_replaces_by_name(tmp_path):
    path = tmp_path / "summary.csv"
    bench.record("a", 2.0, 4.0, "s", "<=0.6", path=path, raw={"seconds": [1.0, 2.0]})
    bench.record("b", 3.0, 1.0, "steps/s", ">=3", path=path)
    bench.record("a", 5.0, 4.0, "s", "<=0.6", path=path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == bench.COLUMNS == ["name", "ours", "reference", "unit", "ratio", "target", "met"]
    assert [(r["name"], r["ratio"], r["met"]) for r in rows] == [("b", "3", "true"), ("a", "1.25", "false")]
    raw = json.loads(bench.raw_path("a", tmp_path).read_text())
    assert raw["seconds"] == [1.0, 2.0] and raw["name"] == "a"


def test_bench_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTRUN_BENCH_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("OPTRUN_BENCH_NAME", "bench_x")
    bench.record("r", 1.0, 2.0, "s")
    bench.note("skipped something")
    assert bench.read_rows()[0]["name"] == "r"
    assert bench.read_notes() == [{"bench": "bench_x", "note": "skipped something"}]


@pytest.mark.parametrize("ratio, target, met", [(0.5, "<=0.5", True), (0.51, "<=0.5", False), (0.9, ">=0.9", True),
                                                (3.0, ">3", False), (1.0, "", None), (1.0, " <2 ", True)])
def test_target_evaluation(ratio, target, met):
    assert bench.target_met(ratio, target) is met


def test_bad_target_is_rejected():
    with pytest.raises(ValueError, match="expected"):
        bench.target_met(1.0, "about 2")


def test_round_robin_alternates_sides_and_builds_each_repeat_afresh():
    calls = []

    def side(name):
        def factory():
            calls.append(f"setup-{name}")
            return lambda: calls.append(name)
        return factory

    times = bench.round_robin({"a": side("a"), "b": side("b")}, repeats=3, warmup=1)
    assert [c for c in calls if not c.startswith("setup")] == ["a", "b"] * 4
    assert calls[:2] == ["setup-a", "a"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


def test_bench_md_lists_rows_notes_and_failures(tmp_path):
    bench.record("fast thing", 1.0, 2.0, "s", "<=0.6", path=tmp_path / "summary.csv")
    bench.record("slow thing", 3.0, 1.0, "s", "<=1", path=tmp_path / "summary.csv")
    bench.record("info", 3.0, 1.0, "s", "", path=tmp_path / "summary.csv")
    bench.note("CUDA section skipped: no GPU", tmp_path)
    runs = [{"bench": "bench_a", "status": "ok", "wall_s": 1.0, "error": "", "log": "logs/bench_a.log"},
            {"bench": "bench_b", "status": "failed", "wall_s": 0.5, "error": "ValueError: boom", "log": "logs/b.log"}]
    md = harness.render(tmp_path, runs, {"cpu": "test cpu", "cores": 2, "threads": 2, "load_1min": 3.0})
    assert "| fast thing | 1 | 2 | s | 0.5 | <=0.6 | yes |" in md
    assert "| slow thing | 3 | 1 | s | 3 | <=1 | **no** |" in md
    assert "| info | 3 | 1 | s | 3 |  |  |" in md
    assert "Targets met: 1 of 2." in md
    assert "CUDA section skipped: no GPU" in md
    assert "bench_b: failed: ValueError: boom" in md


def test_a_failing_benchmark_does_not_stop_the_others(tmp_path):
    files = tmp_path / "benches"
    files.mkdir()
    ok = "from runner.bench import record\n\ndef run(quick=False):\n    record('{0}', 1.0, 2.0, 's', '<=1')\n"
    (files / "bench_a.py").write_text(ok.format("row a"))
    (files / "bench_b.py").write_text("def run(quick=False):\n    raise RuntimeError('deliberately broken')\n")
    (files / "bench_c.py").write_text(ok.format("row c"))
    (files / "helpers.py").write_text("raise SystemExit('not a benchmark: never run')\n")
    out = tmp_path / "out"
    runs = harness.run_all(harness.discover(files), out, quick=True, timeout=120, echo=lambda *a, **k: None)
    assert [(r["bench"], r["status"]) for r in runs] == [("bench_a", "ok"), ("bench_b", "failed"), ("bench_c", "ok")]
    assert "deliberately broken" in runs[1]["error"]
    assert [r["name"] for r in bench.read_rows(out / "summary.csv")] == ["row a", "row c"]
    md = (out / "BENCH.md").read_text()
    assert "| row c |" in md and "bench_b: failed" in md
    assert json.loads((out / "runs.json").read_text())["runs"][1]["status"] == "failed"
    # rerunning one benchmark keeps the other rows and outcomes
    runs = harness.run_all(harness.discover(files, ["a"]), out, full=False, echo=lambda *a, **k: None)
    assert {r["bench"] for r in runs} == {"bench_a", "bench_b", "bench_c"}
    assert len(bench.read_rows(out / "summary.csv")) == 2


def test_discover_rejects_unknown_names(tmp_path):
    (tmp_path / "bench_a.py").write_text("")
    with pytest.raises(SystemExit, match="unknown benchmark"):
        harness.discover(tmp_path, ["nope"])


def test_cuda_section_is_skipped_with_a_note_without_a_gpu(tmp_path, monkeypatch):
    from bench import bench_cuda

    monkeypatch.setenv("OPTRUN_BENCH_DIR", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    bench_cuda.run(quick=True)
    assert not bench.read_rows() and "CUDA section skipped" in bench.read_notes()[0]["note"]


def test_smoke_bench_finds_make_targets(tmp_path):
    mk = tmp_path / "Makefile"
    mk.write_text("VENV ?= .venv\nBIN := $(VENV)/bin\n.PHONY: a\nstability_gap: install\n\t@echo\nx-paper: install\n")
    assert make_targets(mk) == {".PHONY", "stability_gap", "x-paper"}


def test_smoke_bench_splits_the_wall_time_into_arms_report_runs_and_start_up(tmp_path):
    log = ("== optrun reproduce x [smoke] 1/2: study s, arm a\n   arm s/a took 10.5 s\n"
           "== optrun reproduce x [smoke] 2/2: study s, arm b\n   arm s/b took 4.5 s\n"
           "== optrun reproduce x: arms 15.2 s, report 2.5 s\n")
    for i, wall in enumerate((3.0, 4.0, None)):
        run = tmp_path / "x" / f"run{i}"
        run.mkdir(parents=True)
        (run / "status.json").write_text(json.dumps({"status": "completed", "wall_s": wall}))
    (tmp_path / "x" / "broken").mkdir()
    (tmp_path / "x" / "broken" / "status.json").write_text("{not json")
    parts = breakdown(20.0, log, tmp_path)
    assert parts == {"wall": 20.0, "arms": 15.2, "report": 2.5, "training_loops_sum": 7.0, "runs": 3,
                     "startup_and_exit": 2.3}
    # a log cut off before the totals: the arms it did print, no report
    assert breakdown(20.0, log.rsplit("==", 1)[0], tmp_path)["arms"] == 15.0


def test_deferred_accuracy_matches_the_direct_one():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(n, 10, generator=g), torch.randint(10, (n,), generator=g)) for n in (64, 64, 59, 7, 64)]
    deferred = PercentEqual.resolve_all([PercentEqual(lg.argmax(-1), y) for lg, y in batches])
    assert deferred == [accuracy(lg, y).item() for lg, y in batches]
    mixed = [logged_accuracy(lg, y) for lg, y in batches] + [logged_accuracy(torch.randn(2, 9000), torch.arange(2))]
    assert [m.from_logits for m in mixed] == [True] * 5 + [False]  # large logits: argmax at once
    assert PercentEqual.resolve_all(mixed)[:5] == deferred


def test_writer_resolves_tensors_and_deferred_values_in_row_order(tmp_path):
    w = MetricsWriter(tmp_path / "m.csv")
    for i in range(5):
        w.add({"step": i, "loss": torch.tensor(float(i)), "ok": torch.tensor(i % 2 == 0), "n": torch.tensor(i),
               "acc": PercentEqual(torch.tensor([i, 1]), torch.tensor([1, 1]))})
    rows = w.resolve_pending()
    assert [r["loss"] for r in rows] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [r["ok"] for r in rows] == [True, False, True, False, True] and [r["n"] for r in rows] == list(range(5))
    assert [r["acc"] for r in rows] == [50.0, 100.0, 50.0, 50.0, 50.0]
    w.flush()
    assert (tmp_path / "m.csv").read_text().splitlines()[1] == "0,,,0.0,1,0,50.0"


def test_bf16_precision_runs_and_a_bad_precision_fails_early(make_cfg, tmp_path):
    losses = {}
    for p in ("fp32", "bf16"):
        state, trainer, hooks = build(make_cfg("trainer.steps=20", "device=cpu", f"precision={p}"))
        w = MetricsWriter(tmp_path / f"{p}.csv")
        Engine(trainer, hooks, w, progress=False, precision=p).run(state)
        losses[p] = pd.read_csv(tmp_path / f"{p}.csv")["loss"].tolist()
    assert all(math.isfinite(v) for v in losses["bf16"]) and losses["bf16"] != losses["fp32"]
    assert max(abs(a - b) for a, b in zip(losses["fp32"], losses["bf16"])) < 0.1
    with pytest.raises(OptrunError, match="precision"):
        build(make_cfg("device=cpu", "precision=fp8"))


def test_opt_in_benchmarks_run_only_when_named(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "OPT_IN", {"slow": "a slow suite: make bench-slow"})
    ok = "from runner.bench import record\n\ndef run(quick=False):\n    record('{0}', 1.0, 2.0, 's', '<=1')\n"
    (tmp_path / "bench_fast.py").write_text(ok.format("fast row"))
    (tmp_path / "bench_slow.py").write_text(ok.format("slow row"))
    assert [f.stem for f in harness.discover(tmp_path)] == ["bench_fast"]
    assert [f.stem for f in harness.discover(tmp_path, ["slow"])] == ["bench_slow"]
    out, quiet = tmp_path / "out", (lambda *a, **k: None)
    harness.run_all(harness.discover(tmp_path), out, echo=quiet)
    assert "not run by default: a slow suite" in (out / "BENCH.md").read_text()
    # running it afterwards adds its rows to the same table and drops the note
    harness.run_all(harness.discover(tmp_path, ["slow"]), out, full=False, echo=quiet)
    md = (out / "BENCH.md").read_text()
    assert "| fast row |" in md and "| slow row |" in md and "not run by default" not in md


def test_hook_bench_calibrates_calls_to_a_budget():
    from bench.bench_hooks import calls_for

    assert calls_for(1e-3, budget=0.25) == 250
    assert calls_for(10.0, budget=0.25) == 1  # an end-of-run probe: one call per repeat
    assert calls_for(1e-8, budget=0.25, most=1000) == 1000


def test_paired_ratio_cancels_drift_between_rounds(tmp_path):
    ours, ref = [1.0, 2.0, 4.0], [0.5, 1.0, 2.0]  # the machine slows down 2x a round; ours is always 2x
    assert bench.paired_ratio(ours, ref) == 2.0
    row = bench.record("drift", 2.0, 1.0, "s", "<=1.5", path=tmp_path / "s.csv", ratio=bench.paired_ratio(ours, ref))
    assert (row["ratio"], row["met"]) == ("2", "false")
    with pytest.raises(ValueError, match="equally long"):
        bench.paired_ratio([1.0], [])
