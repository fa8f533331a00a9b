"""Continual evaluation every iteration (the stability_gap smoke: Split-digits, 5 tasks x 100
iterations, ER, MLP 64-256-256-10, accuracy on every seen task after every update).

Rows: the overhead of evaluating every iteration (vs the same run without the hook); one batched
forward over all seen tasks vs the same evaluation done with per-task DataLoaders; the hook's cost on
5 tasks x 1000 samples vs one forward+backward at batch 64 (target <= 1x) and vs its floor, a bare
batched forward over the same 5000 samples; optrun's whole
run (build, engine, metrics.csv) vs a lean hand-written loop (target <= 1.1x), and with claims and
figure included (no target); optrun vs Avalanche 0.6.0 running the same experiment with
`eval_every=1, peval_mode='iteration'` (target >= 8x its iterations/s; skipped with a note when
avalanche-lib cannot be imported: `pip install -e .[bench]`).
"""
from __future__ import annotations

import contextlib
import io
import statistics
import warnings

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from bench.common import compose, optrun_factory, workdir
from runner.bench import note, paired_ratio, record, round_robin, set_threads
from runner.data.continual import split
from runner.dispatch import build, execute
from runner.models.mlp import MLP

SMOKE = ["experiment=stability_gap", "device=cpu"]
BASE = {"name": "digits", "test_fraction": 0.3}
ITERS, BATCH, MEMORY, LR, LW_NEW, HIDDEN = 100, 64, 500, 0.05, 0.5, [256, 256]


def lean_run(seed: int = 0, iters: int = ITERS) -> list[list[float]]:
    """The same experiment written by hand as tightly as is reasonable; returns A_k per evaluation."""
    data = split(BASE, seed=seed)
    torch.manual_seed(seed)
    model = MLP(data.input_shape, data.n_classes, hidden=HIDDEN)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    x_eval = torch.cat([t.x_test for t in data.tasks])
    y_eval = torch.cat([t.y_test for t in data.tasks])
    sizes = torch.tensor([len(t.y_test) for t in data.tasks], dtype=torch.float64)
    ends = sizes.cumsum(0).long().tolist()
    segment = torch.repeat_interleave(torch.arange(len(sizes)), sizes.long())
    history = []

    def evaluate(seen: int) -> None:
        model.eval()
        with torch.inference_mode():
            n = ends[seen - 1]
            correct = (model(x_eval[:n]).argmax(1) == y_eval[:n]).double()
            hits = torch.zeros(seen, dtype=torch.float64).index_add_(0, segment[:n], correct)
        model.train()
        history.append(hits / sizes[:seen] * 100)

    mem_x = mem_y = None
    evaluate(1)
    for k, task in enumerate(data.tasks, start=1):
        if k > 1:  # class-balanced memory: an equal random share per class seen so far
            prev = data.tasks[k - 2]
            px = prev.x_train if mem_x is None else torch.cat([mem_x, prev.x_train])
            py = prev.y_train if mem_y is None else torch.cat([mem_y, prev.y_train])
            classes = py.unique()
            quota = MEMORY // len(classes)
            keep = torch.cat([torch.nonzero(py == c).flatten()[torch.randperm(int((py == c).sum()), generator=g)][:quota]
                              for c in classes])
            mem_x, mem_y = px[keep], py[keep]
        n = len(task.y_train)
        for _ in range(iters):
            idx = torch.randint(n, (BATCH,), generator=g)
            x, y = task.x_train[idx], task.y_train[idx]
            if mem_x is None:
                loss = LW_NEW * F.cross_entropy(model(x), y)
            else:
                r = torch.randint(len(mem_y), (BATCH,), generator=g)
                out = model(torch.cat([x, mem_x[r]]))
                loss = LW_NEW * F.cross_entropy(out[:BATCH], y) + (1 - LW_NEW) * F.cross_entropy(out[BATCH:], mem_y[r])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            evaluate(k)
    return [h.tolist() for h in history]


def avalanche_run(seed: int = 0, iters: int = ITERS, defaults: bool = False) -> int:
    """Avalanche's Replay strategy on the same tasks, model, optimizer and batch sizes, evaluating
    the seen tasks' test sets after every iteration; returns the iterations it trained.

    Lean setting (default): accuracy per experience only, no logger, one evaluation batch per task.
    `defaults=True`: Avalanche's default evaluator (accuracy and loss at epoch, experience and
    stream level) and logger, and its default evaluation batch (the training batch size)."""
    from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark
    from avalanche.benchmarks.utils.classification_dataset import _make_taskaware_tensor_classification_dataset
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training import Replay
    from avalanche.training.plugins import EvaluationPlugin

    data = split(BASE, seed=seed)
    whole = {part: (torch.cat([getattr(t, f"x_{part}") for t in data.tasks]),
                    torch.cat([getattr(t, f"y_{part}") for t in data.tasks])) for part in ("train", "test")}
    streams = {part: _make_taskaware_tensor_classification_dataset(*xy) for part, xy in whole.items()}
    bm = class_incremental_benchmark(streams, class_order=list(range(data.n_classes)), num_experiences=data.n_tasks)
    torch.manual_seed(seed)
    model = MLP(data.input_shape, data.n_classes, hidden=HIDDEN)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    batches_per_epoch = -(-len(data.tasks[0].y_train) // BATCH)
    lean = {"eval_mb_size": 1000, "evaluator": EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])}
    strategy = Replay(model=model, optimizer=opt, criterion=torch.nn.CrossEntropyLoss(), mem_size=MEMORY,
                      train_mb_size=BATCH, train_epochs=-(-iters // batches_per_epoch), device="cpu",
                      eval_every=1, peval_mode="iteration", **({} if defaults else lean))
    for k, exp in enumerate(bm.train_stream):
        strategy.train(exp, eval_streams=[bm.test_stream[: k + 1]], num_workers=0)
    return int(strategy.clock.train_iterations)


def eval_sides(n_calls: int) -> dict:
    """The hook's batched evaluation of all 5 tasks vs per-task DataLoaders, n_calls each."""
    state, trainer, hooks = build(compose(*SMOKE))
    hook = hooks[0]
    hook.setup(state)
    model, tasks = state.model, state.data.tasks
    loaders = [DataLoader(TensorDataset(t.x_test, t.y_test), batch_size=256) for t in tasks]

    def dataloader_eval() -> list[float]:
        model.eval()
        accs = []
        with torch.no_grad():
            for loader in loaders:
                correct = total = 0
                for xb, yb in loader:
                    correct += (model(xb).argmax(1) == yb).sum().item()
                    total += len(yb)
                accs.append(100.0 * correct / total)
        model.train()
        return accs

    agree = all(abs(a - b) < 1e-9 for a, b in zip(dataloader_eval(), hook.accuracies(model, len(tasks))))
    assert agree, "the two evaluations must give the same accuracies"
    ours = lambda: [hook.accuracies(model, len(tasks)) for _ in range(n_calls)]  # noqa: E731
    ref = lambda: [dataloader_eval() for _ in range(n_calls)]  # noqa: E731
    return {"optrun": lambda: ours, "dataloaders": lambda: ref}


def large_eval_sides(n_calls: int, per_task: int = 1000, batch: int = 64) -> dict:
    """The hook on 5 tasks x `per_task` evaluation samples (the stability_gap model; the test splits
    replaced by seeded random inputs of that size, labels in each task's classes), called as the engine
    calls it (values deferred, resolved once per `n_calls` as a flush does); a bare batched forward over
    the same samples (the floor); one forward+backward on a training batch."""
    state, _, hooks = build(compose(*SMOKE))
    hook, model = hooks[0], state.model
    g = torch.Generator().manual_seed(0)
    for task in state.data.tasks:
        classes = task.y_train.unique()
        task.x_test = torch.randn((per_task, *task.x_test.shape[1:]), generator=g)
        task.y_test = classes[torch.randint(len(classes), (per_task,), generator=g)]
    hook.setup(state)
    state.task, state.phase_end, state.step = state.data.n_tasks, False, 1
    x_all = torch.cat([t.x_test for t in state.data.tasks])
    xb, yb = state.data.tasks[0].x_train[:batch], state.data.tasks[0].y_train[:batch]

    def calls():
        for _ in range(n_calls):
            hook(state)
        hook.resolve()

    def floor():
        for _ in range(n_calls):
            with torch.inference_mode():
                model(x_all)

    def forward_backward():
        for _ in range(n_calls):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()

    return {"hook": lambda: calls, "floor": lambda: floor, "forward_backward": lambda: forward_backward}


def run(quick: bool = False) -> None:
    set_threads()
    repeats, warmup = (2, 1) if quick else (3, 1)  # 3 (was 5): make bench's 10 minutes
    out = workdir()
    smoke, alone = compose(*SMOKE), compose(*SMOKE, "hooks=[]")
    full = compose(*SMOKE, "force=true")
    sides = {"optrun": optrun_factory(smoke, out, include_build=True),
             "training_alone": optrun_factory(alone, out, include_build=True),
             "lean": lambda: lean_run,
             "optrun_execute": lambda: (lambda: execute(full, out / "execute"))}
    t = round_robin(sides, repeats=repeats, warmup=warmup)
    med = {k: statistics.median(v) for k, v in t.items()}
    raw = {"seconds": t, "iterations": 5 * ITERS}

    def row(what: str, ours: str, ref: str, target: str = "") -> None:
        record(f"continual/stability_gap smoke: {what}", med[ours], med[ref], "s", target, raw=raw,
               ratio=paired_ratio(t[ours], t[ref]))

    row("eval every iteration vs training alone (overhead factor)", "optrun", "training_alone")
    row("optrun (build, engine, metrics.csv) vs lean hand-written loop", "optrun", "lean", "<=1.1")
    row("optrun run incl. claims and figure vs lean hand-written loop", "optrun_execute", "lean")

    n_calls = 20 if quick else 100
    t = round_robin(eval_sides(n_calls), repeats=repeats, warmup=warmup)
    record("continual/evaluating 5 tasks: one batched forward vs per-task DataLoaders",
           statistics.median(t["optrun"]) / n_calls, statistics.median(t["dataloaders"]) / n_calls, "s/eval", "",
           raw={"seconds": t, "calls_per_repeat": n_calls}, ratio=paired_ratio(t["optrun"], t["dataloaders"]))

    t = round_robin(large_eval_sides(n_calls), repeats=repeats, warmup=warmup)
    med = {k: statistics.median(v) / n_calls * 1e3 for k, v in t.items()}
    raw = {"seconds": t, "calls_per_repeat": n_calls, "samples": 5000, "batch": 64}
    for what, ours, ref, target in (
            ("continual_eval hook, 5 tasks x 1000 samples, vs one forward+backward at batch 64", "hook",
             "forward_backward", "<=1"),
            ("bare batched forward over the same 5000 samples (the floor) vs one forward+backward at batch 64",
             "floor", "forward_backward", ""),
            ("continual_eval hook vs its floor (a bare batched forward over the same 5000 samples)", "hook", "floor", "")):
        record(f"continual/{what}", med[ours], med[ref], "ms/call", target, raw=raw, ratio=paired_ratio(t[ours], t[ref]))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import avalanche  # noqa: F401
    except Exception as e:  # ImportError, or a broken install beside this torch
        note(f"Avalanche comparison skipped: avalanche-lib is not importable here ({type(e).__name__}: {e}); "
             "install the bench extra: pip install -e .[bench]")
        return
    iters = {}

    def avalanche_side(defaults: bool):
        def go():
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # its logger's bars
                warnings.simplefilter("ignore")
                iters[defaults] = avalanche_run(defaults=defaults)
        return lambda: go

    t = round_robin({"optrun": optrun_factory(smoke, out, include_build=True), "avalanche": avalanche_side(False),
                     "avalanche_defaults": avalanche_side(True)},
                    repeats=1 if quick else 2, warmup=0 if quick else 1)  # ~30 s a round: 2 repeats (were 5)
    rate = 5 * ITERS / statistics.median(t["optrun"])
    raw = {"seconds": t, "iterations": {"optrun": 5 * ITERS, "avalanche": iters[False],
                                        "avalanche_defaults": iters[True]}}
    for key, defaults, what in (("avalanche", False, "lean setting: accuracy only, no logger, eval batch 1000"),
                                ("avalanche_defaults", True, "its default evaluator, logger and eval batch")):
        record(f"continual/stability_gap smoke: optrun vs Avalanche {avalanche.__version__} ({what})",
               rate, iters[defaults] / statistics.median(t[key]), "iterations/s", ">=8", raw=raw,
               ratio=paired_ratio([5 * ITERS / s for s in t["optrun"]], [iters[defaults] / s for s in t[key]]))

if __name__ == "__main__":
    run()
