"""Config -> components -> engine -> files. One function, `execute`, serves every experiment.

An experiment's own code lives in `experiments/<experiment_id>/` and is found by that id
(`runner.experiments.module`): `claims.CLAIMS` (evaluated on the run's logs) and `plots.plot_run`
(its per-run figure).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from runner import seeding
from runner.checkpoint import Checkpointer
from runner.claims import evaluate_claims, format_table
from runner.engine import Engine, autocast_dtype
from runner.errors import OptrunError
from runner.experiments import module as experiment_module
from runner.results import MetricsWriter, RunDir, atomic_write, write_json
from runner.trainers.base import TrainState


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise OptrunError(f"device={name}: CUDA is not available on this machine (use device=cpu or device=auto)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise OptrunError(f"device={name}: expected auto, cpu or cuda[:N]")
    return torch.device(name)


def show_progress(setting) -> bool:
    """`progress`: true, false, or auto (a bar only when stderr is a terminal, not in batch logs)."""
    if isinstance(setting, str) and setting.lower() == "auto":
        return sys.stderr.isatty()
    return bool(setting)


def build(cfg: DictConfig) -> tuple[TrainState, object, list]:
    """Instantiate data, the named components, trainer and hooks from the config.

    The `model`, `optimizer` and `schedule` groups make the component named `model`; `components:`
    adds more by name (`components.<name>.{module, optimizer, schedule}`, each a Hydra config), each
    initialised from its own stream. The trainer's config lists the components it needs
    (`trainer.components`); a missing one is an error before anything is built."""
    device = resolve_device(str(cfg.device))
    autocast_dtype(str(cfg.get("precision", "fp32")))  # a bad value fails here, before anything runs
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    seed = int(cfg.seed)
    seeding.seed_everything(seed)
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    needs = trainer_cfg.pop("components", None)
    specs = dict(cfg.get("components") or {})
    missing = [n for n in (needs or []) if n not in specs and not (n == "model" and cfg.get("model"))]
    if missing:
        raise OptrunError(f"trainer.components: the trainer needs component '{missing[0]}', which this config does "
                          f"not define (add components.{missing[0]}.module / .optimizer)")
    data = instantiate(cfg.dataset, seed=seed, _convert_="all").to(device) if cfg.get("dataset") else None
    modules, optimizers, schedulers = {}, {}, {}
    if cfg.get("model"):
        if data is None:
            raise OptrunError("model: a model needs a dataset (set dataset=..., or model=none for solver runs)")
        torch.manual_seed(seeding.stream_seed(seed, "init"))
        modules["model"] = instantiate(cfg.model, input_shape=data.input_shape, n_classes=data.n_classes,
                                       _convert_="all")
        _optimizer_for("model", cfg.get("optimizer"), cfg.get("schedule"), modules, optimizers, schedulers)
    for name, spec in specs.items():
        if not spec or "module" not in spec:
            raise OptrunError(f"components.{name}: expected a mapping with module (and optionally optimizer, schedule)")
        torch.manual_seed(seeding.stream_seed(seed, f"init.{name}"))
        modules[name] = instantiate(spec.module, _convert_="all")
        _optimizer_for(name, spec.get("optimizer"), spec.get("schedule"), modules, optimizers, schedulers)
    for name, module in modules.items():
        modules[name] = module.to(device)
        if cfg.get("compile", False):
            modules[name].compile()  # in place: parameter names and state_dict keys stay those of the module
    for name in optimizers:  # built after the move: optimizers hold the device's parameters
        optimizers[name] = optimizers[name](modules[name].parameters())
        if schedulers.get(name) is not None:
            schedulers[name] = schedulers[name](optimizers[name])
    trainer = instantiate(trainer_cfg, _convert_="all")
    # a hook's values may outlive its selection (an experiment tunes hooks.x, the user sets hooks=[y]): skip those
    hooks = []
    for key, h in sorted((cfg.get("hooks") or {}).items()):
        if "_target_" in h:
            hook = instantiate(h, _convert_="all")
            hook.name = key  # its metrics' namespace and its stream
            hooks.append(hook)
    gens = {s: seeding.generator(seed, s, device) for s in seeding.STREAMS}
    state = TrainState(data=data, device=device, seed=seed, generators=gens, modules=modules, optimizers=optimizers,
                       schedulers={k: v for k, v in schedulers.items() if v is not None}, trainer=trainer)
    return state, trainer, hooks


def _optimizer_for(name, opt_cfg, sched_cfg, modules, optimizers, schedulers) -> None:
    """Record the optimizer and schedule factories of component `name` (applied after the device move)."""
    if opt_cfg:
        optimizers[name] = instantiate(opt_cfg, _convert_="all")
        schedulers[name] = instantiate(sched_cfg, _convert_="all") if sched_cfg else None


def _instantiation_error(e: Exception) -> OptrunError:
    """Hydra wraps constructor errors; surface ours unchanged and others as one line."""
    cause = e
    while cause.__cause__ is not None and not isinstance(cause, OptrunError):
        cause = cause.__cause__
    if isinstance(cause, OptrunError):
        return cause
    lines = str(e).strip().splitlines()
    if "unexpected keyword argument 'estimator'" in str(e):
        return OptrunError(f"estimator=: {lines[0].split('target ')[-1].rstrip(':')} takes no gradient estimator "
                           f"(the supervised trainer and papers' trainers that accept trainer.estimator do)")
    return OptrunError(f"could not build the run: {' '.join(lines[:2])}")


def execute(cfg: DictConfig, run_path: str | Path) -> dict:
    """Run one configuration into `run_path`; return its summary (or the existing one if finished).

    An interrupted run (status `running`/`failed` with a `checkpoint.pt`) resumes from its
    checkpoint; `restart=true` starts it from scratch instead, `force=true` reruns a finished run.
    """
    rd = RunDir(run_path)
    force, restart = bool(cfg.get("force", False)), bool(cfg.get("restart", False))
    if rd.finished() and not force:
        status = rd.status()["status"]
        print(f"optrun: {rd.path} is already {status}; nothing to do (add force=true to rerun it)")
        return {"status": status, "skipped": True}
    rd.acquire_lock()
    try:
        return _execute_locked(cfg, rd, fresh=force or restart)
    finally:
        rd.release_lock()


def _execute_locked(cfg: DictConfig, rd: RunDir, fresh: bool) -> dict:
    from runner.loggers import check_loggers, open_trackers

    try:
        check_loggers(cfg.get("logger"))  # an unknown logger or a missing extra fails before anything is built
        state, trainer, hooks = build(cfg)
    except OptrunError as e:
        _mark_failed(rd, str(e))
        raise
    except Exception as e:
        err = _instantiation_error(e)
        _mark_failed(rd, str(err))
        raise err from e
    config_text = OmegaConf.to_yaml(cfg, resolve=True)
    ck = cfg.get("checkpoint") or {}
    checkpointer = Checkpointer(rd.checkpoint, config_text, every_steps=ck.get("every_steps"),
                                every_minutes=ck.get("every_minutes"), on_signal=ck.get("on_signal", True))
    resume = None
    if fresh:
        rd.clear()
    elif rd.checkpoint.exists():
        resume = checkpointer.load()  # a corrupt or foreign checkpoint is an error naming its path
        print(f"optrun: resuming {rd.path.name} from its checkpoint at step {resume['engine']['step']}")
    else:
        rd.clear()  # an interrupted run without a checkpoint has nothing to resume from
    atomic_write(rd.config, config_text)
    rd.write_status("running", study=cfg.get("study"), arm=cfg.get("arm"), scale=cfg.get("scale"),
                    step=resume["engine"]["step"] if resume else 0, pid=os.getpid(),
                    device=str(state.device), resumed_from=resume["engine"]["step"] if resume else None)
    engine = Engine(trainer, hooks, MetricsWriter(rd.metrics), log_every=cfg.log_every, flush_every=cfg.flush_every,
                    progress=show_progress(cfg.progress), desc=f"{cfg.experiment_id}/{rd.path.name}",
                    checkpointer=checkpointer, on_flush=rd.refresh_lock, precision=str(cfg.get("precision", "fp32")))
    trackers = open_trackers(OmegaConf.to_container(cfg, resolve=True), rd.path,
                             resume_step=resume["engine"]["step"] if resume else None)
    engine.writer.listeners.append(trackers.log_rows)
    try:
        outcome = engine.run(state, resume=resume)
    except SystemExit:
        rd.write_status("running", step=state.step, interrupted=f"signal {checkpointer.signal_received}",
                        checkpoint_step=state.step)
        trackers.close("interrupted")
        raise
    except BaseException as e:
        rd.write_status("failed", step=state.step, error=f"{type(e).__name__}: {e}")
        trackers.close("failed")
        raise
    summary = finalize(cfg, rd, engine, outcome, hooks)
    trackers.finish(summary, sorted(rd.path.glob("*.png")))
    if not ck.get("keep_final", False):
        rd.checkpoint.unlink(missing_ok=True)
    return summary


def _mark_failed(rd: RunDir, message: str) -> None:
    """Record a failure without touching a finished run's files."""
    if not rd.finished():
        rd.write_status("failed", step=0, error=message)


def finalize(cfg: DictConfig, rd: RunDir, engine: Engine, outcome, hooks: list) -> dict:
    import pandas as pd  # here, not at the top: a run reaches its first step ~0.2 s sooner

    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    metrics = pd.read_csv(rd.metrics) if rd.metrics.exists() else pd.DataFrame()
    metrics.attrs["run_dir"] = str(rd.path)  # claims and figures read array metrics through it (runner.arrays)
    final = engine.writer.last_values()
    for h in hooks:
        final.update(h.summary())
    claims_mod = experiment_module(cfg.experiment_id, "claims")
    claims = evaluate_claims(claims_mod.CLAIMS, metrics, cfg_dict) if claims_mod and outcome.status == "completed" else []
    summary = {"experiment": cfg.experiment_id, "run": rd.path.name, "study": cfg.get("study"), "arm": cfg.get("arm"),
               "status": outcome.status, "steps": outcome.step, "diverged_at": outcome.diverged_at, "wall_s": round(outcome.wall_s, 3),
               "metrics": final, "claims": claims}
    write_json(rd.summary_file, summary)
    plots = experiment_module(cfg.experiment_id, "plots")
    if plots and hasattr(plots, "plot_run") and len(metrics):
        try:
            plots.plot_run(metrics, cfg_dict, rd.path)
        except Exception as e:  # noqa: BLE001 -- a figure that cannot be drawn (a probe switched off) loses no run
            print(f"optrun: {cfg.experiment_id}/{rd.path.name}: no per-run figure ({type(e).__name__}: {e})",
                  file=sys.stderr)
    rd.write_status(outcome.status, step=outcome.step, wall_s=round(outcome.wall_s, 3),
                    diverged_at=outcome.diverged_at)
    _print_summary(cfg, rd, outcome, claims)
    return summary


def _print_summary(cfg, rd: RunDir, outcome, claims: list[dict]) -> None:
    line = f"optrun: {cfg.experiment_id}/{rd.path.name}: {outcome.status} after {outcome.step} steps " \
           f"in {outcome.wall_s:.1f}s"
    if outcome.status == "diverged":
        line += f" (non-finite loss at step {outcome.diverged_at})"
    print(line + f" -> {rd.path}")
    if claims:
        print(format_table(claims))
