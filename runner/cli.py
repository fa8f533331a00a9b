"""`optrun`: the Hydra entry point, and `optrun reproduce <id>`.

`optrun --help` lists the experiment folders and config groups (without importing torch); overrides
are checked first so a typo gets one line naming the key and what was expected (exit 2); then Hydra
composes and runs (or sweeps, `-m`). `scale=<s>` also selects the experiment's own scale file
(`runner.experiments.with_scale`), so `scale=paper` composes the paper's whole setup.
"""
from __future__ import annotations

import contextlib
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from runner import experiments, startup
from runner.config_check import CONF_DIR, check_overrides
from runner.errors import OptrunError, RunLocked
from runner.naming import run_name

OmegaConf.register_new_resolver("optrun_run_name", run_name, replace=True)
experiments.register_search_path()

# command-line flags that are Hydra's own, not overrides
_HYDRA_FLAGS = {"-m", "--multirun", "--cfg", "-c", "--resolve", "--package", "-p", "--info", "-i",
                "--hydra-help", "--version", "--run", "-r", "--shell-completion", "-sc", "--config-path", "-cp",
                "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}
_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-path", "-cp", "--config-name", "-cn",
               "--config-dir", "-cd", "--experimental-rerun", "--shell-completion", "-sc"}


def help_text() -> str:
    exps = experiments.ids()
    width = max((len(e) for e in exps), default=10)
    lines = ["optrun - reproduce optimization papers with one engine, per-iteration probes and claim checks.",
             "",
             "Usage:",
             "  optrun reproduce <id> [scale=smoke|paper] [hydra/launcher=slurm] [key=value ...]",
             "                                     every study and arm of the paper, then the report and claims",
             "  optrun experiment=<id> [scale=smoke|paper] [key=value ...]     one run",
             "  optrun -m experiment=<id> seed=0,1,2 [key=a,b ...]             a sweep (one run per combination)",
             "  optrun-report results/<id> [--check]                           tables, figures, claim report",
             "  optrun status [results_dir] [--json]                           runs by state, errors, claims passed",
             "",
             "Experiments (experiments/<id>/; `make <id>` = `optrun reproduce <id>` at smoke scale):"]
    lines += [f"  {e:<{width}}  {experiments.one_line(e)}" for e in exps]
    lines += ["", "Config groups (choose with group=option):"]
    for group in sorted(d for d in CONF_DIR.iterdir() if d.is_dir() and d.name not in ("experiment", "hydra")):
        opts = sorted(p.stem for p in group.glob("*.yaml"))
        if opts:
            lines.append(f"  {group.name:<11} {', '.join(opts)}")
    for exp, folder in experiments.folders().items():  # groups only one paper uses: <id>=<option>
        opts = sorted(p.stem for p in (folder / "conf" / exp).glob("*.yaml"))
        if opts:
            lines.append(f"  {exp:<11} {', '.join(opts)}  (experiment={exp} only)")
    lines += ["",
              "Common keys: seed=0  device=auto|cpu|cuda  scale=smoke|paper  results_dir=results  force=true",
              "             optimizer.lr=0.01  trainer.batch_size=64  log_every=1  progress=false",
              "Results: results/<experiment>/<run-name>/{config.yaml,metrics.csv,status.json,summary.json,*.png}",
              "Hydra's own help: optrun --hydra-help.   Show the composed config: optrun <overrides> --cfg job"]
    return "\n".join(lines)


def _user_overrides(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in _WITH_VALUE:
            skip = True
            continue
        if a.startswith("-"):
            continue
        out.append(a)
    return out


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
def _app(cfg: DictConfig) -> None:
    from runner.dispatch import execute

    startup.skip_dynamo_import(not cfg.get("compile", False))  # ~1 s less start-up (runner/startup.py)
    startup.mark_first_step()  # only with $OPTRUN_FIRST_STEP_FILE (bench/bench_startup.py)
    try:
        execute(cfg, HydraConfig.get().runtime.output_dir)
    except RunLocked as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:  # a sweep goes on with its other runs
            print(f"optrun: skipped: {e}", file=sys.stderr)
            return
        print(f"optrun: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except OptrunError as e:
        print(f"optrun: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


def run(argv: list[str], checked: bool = False) -> int:
    """One `optrun [flags] overrides...` call in this process; its exit code. `checked`: the caller has
    already checked the overrides (`optrun reproduce` checks an arm's sweep once, not once per run), and
    Hydra composes the config once, not twice (`startup.run_mode_known`)."""
    from hydra.core.global_hydra import GlobalHydra

    overrides = _user_overrides(argv)
    flags = argv[:]
    for o in overrides:
        flags.remove(o)
    try:
        overrides = experiments.with_scale(overrides)
        if not checked and not any(a in ("--info", "-i", "--hydra-help", "--version", "-sc", "--shell-completion")
                                   for a in argv):
            check_overrides(overrides, multirun=bool({"-m", "--multirun"} & set(argv)))
    except OptrunError as e:
        print(f"optrun: error: {e}", file=sys.stderr)
        return OptrunError.exit_code
    saved = sys.argv
    sys.argv = [saved[0], *flags, *overrides]  # flags first: argparse takes the overrides in one piece
    startup.validate_first_job_only()  # the overrides are checked: one composition per run, not two
    GlobalHydra.instance().clear()
    try:
        # optrun's own calls: the run mode follows from the flags (startup.run_mode_known)
        with startup.run_mode_known() if checked else contextlib.nullcontext():
            _app()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()
    return 0


def main() -> None:
    startup.fast_exit()  # ~0.3 s less at exit once torch is loaded (runner/startup.py)
    argv = sys.argv[1:]
    if argv[:1] == ["reproduce"]:
        from runner.reproduce import main as reproduce

        sys.exit(reproduce(argv[1:]))
    if argv[:1] == ["status"]:
        from runner.status import main as status

        sys.exit(status(argv[1:]))
    if "--help" in argv or "-h" in argv:
        print(help_text())
        return
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
