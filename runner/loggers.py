"""Experiment trackers that mirror a run into the tools researchers already use: TensorBoard and MLflow.

`metrics.csv` stays the record; a tracker only mirrors it. `logger=none|tensorboard|mlflow` (a list allowed:
`logger=[tensorboard,mlflow]`) selects them; each option is a key of `cfg.logger` with its settings
(`conf/logger/`). The run hands every block of rows to the trackers right after metrics.csv has them (at each
flush, so a tracker costs one call per `flush_every` steps, not per step) and, at the end, the summary and the
figures. A tracker that fails while logging prints one line and is dropped: it never costs the run.

- TensorBoard (`pip install -e .[tensorboard]`): event files in the run folder, so `tensorboard --logdir
  results` shows runs as `<experiment>/<run-name>`; scalars per step; at the end the flattened config as
  hparams with the final metrics (subfolder `hparams/`), and every PNG figure as an image. A resumed run
  opens its writer with `purge_step` at the checkpoint's step, so the steps it repeats are not shown twice.
- MLflow (`pip install -e .[mlflow]`): a local SQLite store by default (`<results_dir>/mlflow.db`, artifacts in
  `<results_dir>/mlartifacts/`; `logger.mlflow.tracking_uri` for a server), one MLflow experiment per optrun
  experiment, run name = the optrun run name, params = the flattened config, metrics per step (names outside
  MLflow's alphabet get `_`), tags = study / arm / scale / status, figures and summary.json as artifacts.
  Every call to a SQLite store holds an exclusive file lock beside it, so the jobs of a sweep can log at once
  (SQLite's own locking on a shared file system is not enough; on a cluster prefer a tracking server). The
  MLflow run id is kept in the run folder (`mlflow_run_id`), so a resumed run continues its MLflow run.
"""
from __future__ import annotations

import contextlib
import re
import sys
import time
from pathlib import Path

from runner.errors import OptrunError

EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}  # name: (module, extra)


def flatten(cfg, prefix: str = "") -> dict:
    """{'a.b': value} for a nested dict/list config."""
    out = {}
    items = cfg.items() if isinstance(cfg, dict) else enumerate(cfg) if isinstance(cfg, list) else None
    if items is None:
        return {prefix: cfg}
    for k, v in items:
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, (dict, list)) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def _number(v) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _require(name: str):
    module, extra = EXTRAS[name]
    try:
        return __import__(module)
    except ImportError:
        raise OptrunError(f"logger={name}: the '{module}' package is not installed; "
                          f"pip install -e '.[{extra}]'") from None


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, run_dir: Path, cfg: dict, settings: dict, resume_step: int | None):
        _require("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self.cfg = Path(run_dir), cfg
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=resume_step,
                                    flush_secs=int(settings.get("flush_secs", 30)))

    def log_rows(self, rows: list[dict]) -> None:
        for row in rows:
            step = int(row["step"])
            for k, v in row.items():
                x = _number(v)
                if x is not None and k not in ("step", "task"):
                    self.writer.add_scalar(k, x, step)

    def finish(self, summary: dict, figures: list[Path]) -> None:
        import matplotlib.image as mpimg

        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in flatten(self.cfg).items()}
        final = {f"final/{k}": float(v) for k, v in (summary.get("metrics") or {}).items() if _number(v) is not None}
        final["final/status_completed"] = float(summary.get("status") == "completed")
        self.writer.add_hparams(hparams, final, run_name="hparams", global_step=summary.get("steps"))
        for png in figures:
            image = mpimg.imread(png)
            self.writer.add_image(f"figures/{png.stem}", image[..., :3], summary.get("steps") or 0, dataformats="HWC")
        self.writer.close()

    def close(self, status: str) -> None:
        self.writer.close()


_MLFLOW_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


def mlflow_key(name: str) -> str:
    """MLflow accepts letters, digits, `_ - . / ` and space in metric and param names; map the rest to `_`."""
    return _MLFLOW_KEY.sub("_", str(name))


class MLflowTracker:
    name = "mlflow"
    BATCH = 900  # MLflow's log_batch takes at most 1000 metrics, 100 params, 100 tags per request

    def __init__(self, run_dir: Path, cfg: dict, settings: dict, resume_step: int | None):
        _require("mlflow")
        from mlflow.tracking import MlflowClient

        self.run_dir, self.cfg = Path(run_dir), cfg
        results = Path(cfg.get("results_dir") or "results").resolve()
        uri = settings.get("tracking_uri") or f"sqlite:///{results / 'mlflow.db'}"
        self.lock_path = Path(uri[len("sqlite:///"):] + ".lock") if uri.startswith("sqlite:///") else None
        if self.lock_path is not None:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        self.client = None
        with self._locked():
            self.client = MlflowClient(tracking_uri=uri)
            exp_id = self._experiment(str(cfg.get("experiment_id") or "adhoc"),
                                      settings.get("artifact_location") or (results / "mlartifacts").as_uri())
            self.run_id = self._run(exp_id, resume_step)

    @contextlib.contextmanager
    def _locked(self):
        if self.lock_path is None:
            yield
            return
        import fcntl

        with open(self.lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _experiment(self, name: str, artifact_root: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            return self.client.create_experiment(name, artifact_location=f"{artifact_root}/{name}")
        return exp.experiment_id

    def _run(self, exp_id: str, resume_step: int | None) -> str:
        id_file = self.run_dir / "mlflow_run_id"
        if resume_step is not None and id_file.exists():
            run_id = id_file.read_text().strip()
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        tags = {"study": self.cfg.get("study"), "arm": self.cfg.get("arm"), "scale": self.cfg.get("scale"),
                "status": "running", "run_dir": str(self.run_dir.resolve())}
        run = self.client.create_run(exp_id, run_name=self.run_dir.name,
                                     tags={k: str(v) for k, v in tags.items() if v is not None})
        id_file.write_text(run.info.run_id)
        from mlflow.entities import Param

        params = [Param(mlflow_key(k)[:250], str(v)[:6000]) for k, v in flatten(self.cfg).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(run.info.run_id, params=params[i:i + 100])
        return run.info.run_id

    def log_rows(self, rows: list[dict]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_key(k), x, now, int(row["step"])) for row in rows for k, v in row.items()
                   if k not in ("step", "task") and (x := _number(v)) is not None]
        with self._locked():
            for i in range(0, len(metrics), self.BATCH):
                self.client.log_batch(self.run_id, metrics=metrics[i:i + self.BATCH])

    def finish(self, summary: dict, figures: list[Path]) -> None:
        with self._locked():
            for png in figures:
                self.client.log_artifact(self.run_id, str(png), artifact_path="figures")
            summary_file = self.run_dir / "summary.json"
            if summary_file.exists():
                self.client.log_artifact(self.run_id, str(summary_file))
            self.client.set_tag(self.run_id, "status", summary.get("status", "completed"))
            self.client.set_terminated(self.run_id, status="FINISHED")

    def close(self, status: str) -> None:
        with self._locked():
            self.client.set_tag(self.run_id, "status", status)
            self.client.set_terminated(self.run_id, status="FAILED" if status == "failed" else "KILLED")


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker}


class Trackers:
    """The selected trackers as one: `log_rows` (a MetricsWriter listener), `finish`, `close`."""

    def __init__(self, trackers: list):
        self.trackers = trackers

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def _each(self, method: str, *args) -> None:
        for t in list(self.trackers):
            try:
                getattr(t, method)(*args)
            except Exception as e:  # noqa: BLE001 -- a tracker never costs the run
                print(f"optrun: logger={t.name} stopped ({type(e).__name__}: {e}); metrics.csv is unaffected",
                      file=sys.stderr)
                self.trackers.remove(t)

    def log_rows(self, rows: list[dict]) -> None:
        self._each("log_rows", rows)

    def finish(self, summary: dict, figures: list[Path]) -> None:
        self._each("finish", summary, figures)

    def close(self, status: str) -> None:
        self._each("close", status)


def check_loggers(selected) -> dict:
    """`cfg.logger` as {name: settings}; an unknown name or a missing package is one line naming the extra."""
    selected = selected or {}
    if not hasattr(selected, "items"):
        raise OptrunError(f"logger: expected none, a logger name or a list of them, got {selected!r}")
    unknown = sorted(set(selected) - set(TRACKERS))
    if unknown:
        raise OptrunError(f"logger: unknown logger '{unknown[0]}' (expected one of: none, {', '.join(TRACKERS)})")
    for name in selected:
        _require(name)
    return dict(selected)


def open_trackers(cfg: dict, run_dir: Path, resume_step: int | None = None) -> Trackers:
    """The trackers `cfg["logger"]` selects (an empty mapping or null: none)."""
    selected = check_loggers(cfg.get("logger"))
    trackers = []
    for name in sorted(selected):
        try:
            trackers.append(TRACKERS[name](run_dir, cfg, selected[name] or {}, resume_step))
        except Exception as e:  # noqa: BLE001 -- a store that cannot be opened never costs the run
            print(f"optrun: logger={name} not started ({type(e).__name__}: {e}); metrics.csv is unaffected",
                  file=sys.stderr)
    return Trackers(trackers)

