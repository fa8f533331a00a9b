"""Start-up (runner/startup.py): `optrun --help` imports no torch; skipping the `torch._dynamo` import
changes no number an optimizer computes, and `compile=true` keeps torch's own behaviour. No timing
here: bench/bench_startup.py measures."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from runner import startup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.fixture(autouse=True)
def _torch_behaviour_after():
    yield
    startup.skip_dynamo_import(False)


def test_help_imports_no_torch():
    p = _python("-X", "importtime", "-c", "import sys; sys.argv = ['optrun', '--help']; "
                "from runner.cli import main; main()")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Usage:" in p.stdout
    modules = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", p.stderr, flags=re.M)
    assert "runner.cli" in modules  # the report was read
    assert [m for m in modules if m == "torch" or m.startswith("torch.")] == []


def _train(opt_factory, steps: int = 5, skip: bool = False) -> tuple[list[torch.Tensor], dict]:
    startup.skip_dynamo_import(skip)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    opt = opt_factory(model.parameters())
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    state = opt.state_dict()
    opt.load_state_dict(state)
    return [p.detach().clone() for p in model.parameters()], state


OPTIMIZERS = {
    "sgd_momentum_nesterov_wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2, momentum=0.5),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-1),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_skipping_the_dynamo_import_gives_identical_steps(name):
    ref, ref_state = _train(OPTIMIZERS[name], skip=False)
    got, state = _train(OPTIMIZERS[name], skip=True)
    assert startup.dynamo_skipped()
    for a, b in zip(ref, got):
        assert torch.equal(a, b)
    for k, per_param in ref_state["state"].items():
        for key, v in per_param.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(state["state"][k][key])), (k, key)


def test_grad_mode_and_step_hooks_as_torch_has_them():
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # built first: its class's step is already hooked
    calls = []
    opt.register_step_post_hook(lambda *a: calls.append(torch.is_grad_enabled()))
    startup.skip_dynamo_import(True)
    model(torch.ones(2, 3)).sum().backward()
    with torch.enable_grad():
        opt.step()  # an in-place update of a leaf that requires grad: only valid in no-grad mode
        assert torch.is_grad_enabled()  # restored after the step
    assert calls == [True]  # the hook still runs (after the step, in the caller's grad mode)
    assert model.weight.is_leaf and model.weight.grad_fn is None  # the update ran without grad (else: error)


def test_restoring_gives_back_torch_objects():
    before = {cls: vars(cls)["step"] for cls in (torch.optim.SGD, torch.optim.Adam)}
    zero_grad = torch.optim.Optimizer.zero_grad.__wrapped__
    had = "__dynamo_disable" in zero_grad.__dict__
    startup.skip_dynamo_import(True)
    assert all(vars(cls)["step"] is not step for cls, step in before.items())
    assert zero_grad.__dict__.get("__dynamo_disable") is zero_grad or had
    startup.skip_dynamo_import(False)
    assert not startup.dynamo_skipped()
    assert all(vars(cls)["step"] is step for cls, step in before.items())
    assert ("__dynamo_disable" in zero_grad.__dict__) == had


def test_no_dynamo_import_when_skipped_and_torch_behaviour_without(tmp_path):
    mark = tmp_path / "first_step.time"
    code = textwrap.dedent("""
        import sys, time
        t0 = time.time()
        import torch
        from runner import startup
        startup.skip_dynamo_import(True)
        startup.mark_first_step()
        model = torch.nn.Linear(4, 2)
        for make in (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), lambda p: torch.optim.Adam(p)):
            opt = make(model.parameters())
            model(torch.ones(3, 4)).sum().backward()
            opt.step()
            opt.zero_grad()
            opt.load_state_dict(opt.state_dict())
        assert "torch._dynamo" not in sys.modules, "skipped, yet torch._dynamo was imported"
        t = float(open(sys.argv[1]).read())
        assert t0 <= t <= time.time(), (t0, t)
        startup.skip_dynamo_import(False)  # compile=true: torch's own wrappers, which import dynamo
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        assert "torch._dynamo" in sys.modules, "torch's behaviour was not restored"
        print("ok")
    """)
    p = _python("-c", code, str(mark), env={startup.FIRST_STEP_ENV: str(mark)})
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


@pytest.mark.parametrize("compile_", [False, True])
def test_cli_skips_only_without_compile(monkeypatch, tmp_path, compile_):
    from runner import cli, dispatch

    seen = []
    monkeypatch.setattr(dispatch, "execute", lambda cfg, path: seen.append(startup.dynamo_skipped()))
    code = cli.run([f"compile={str(compile_).lower()}", f"results_dir={tmp_path}", "trainer.steps=1"])
    assert code == 0 and seen == [not compile_]


def test_the_sweeper_composes_only_the_first_job_of_a_batch_before_launching():
    """validate_first_job_only: one early composition per batch instead of one per job (the launcher
    composes each job anyway); a config that cannot compose still fails before anything runs."""
    from types import SimpleNamespace

    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    startup.validate_first_job_only()
    startup.validate_first_job_only()  # idempotent
    composed = []

    class Loader:
        def load_sweep_config(self, master_config, sweep_overrides):
            composed.append(sweep_overrides)
            if "bad=1" in sweep_overrides:
                raise ValueError("cannot compose")

    sweeper = BasicSweeper.__new__(BasicSweeper)
    sweeper.hydra_context, sweeper.config = SimpleNamespace(config_loader=Loader()), object()
    sweeper.validate_batch_is_legal([["seed=0"], ["seed=1"], ["seed=2"]])
    assert composed == [["seed=0"]]
    with pytest.raises(ValueError, match="cannot compose"):
        sweeper.validate_batch_is_legal([["bad=1", "seed=0"], ["bad=1", "seed=1"]])


def test_a_checked_run_composes_its_config_once(tmp_path, monkeypatch):
    """run_mode_known: optrun reproduce's pooled runs (`cli.run(..., checked=True)`) skip Hydra's extra
    composition for `hydra.mode` (get_mode); plain calls, and any call with a hydra.mode override, keep
    it. Equivalent because no optrun config sets hydra.mode (checked below over every config file)."""
    from hydra._internal.hydra import Hydra
    from hydra.types import RunMode

    from runner import cli

    composed = []
    original = Hydra.compose_config

    def compose_config(self, *args, **kwargs):
        composed.append(kwargs.get("run_mode"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Hydra, "compose_config", compose_config)
    run = ["experiment=dadao", "seed=0", "progress=false", f"results_dir={tmp_path}"]
    assert cli.run(run, checked=True) == 0
    assert composed == [RunMode.RUN] and (tmp_path / "dadao").is_dir()
    assert Hydra.get_mode.__qualname__ == "Hydra.get_mode"  # restored
    composed.clear()
    assert cli.run([*run, "force=true"]) == 0
    assert composed.count(RunMode.MULTIRUN) == 1 and composed[-1] == RunMode.RUN  # get_mode's, then the run's
    roots = [os.path.join(ROOT, "conf"), os.path.join(ROOT, "experiments")]
    files = [os.path.join(d, f) for r in roots for d, _, fs in os.walk(r) for f in fs if f.endswith(".yaml")]
    assert len(files) > 100
    for f in files:
        text = open(f).read()
        assert not re.search(r"^\s*mode:\s*(RUN|MULTIRUN)\b", text, re.M) and "hydra.mode" not in text, f
