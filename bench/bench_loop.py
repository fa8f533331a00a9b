"""Training-loop overhead on the CPU: optrun's supervised engine (the real `build` + `Engine`, progress
off, default logging) vs a bare hand-written loop over tensors in memory (the floor) vs the usual
`DataLoader(TensorDataset)` loop (num_workers=0, its fastest form for data in memory, and
num_workers=2 as PyTorch's CIFAR-10 tutorial writes it). MLP on MNIST-1D and a small CNN on digits,
batch 64, same steps, same model, optimizer and data; sides interleaved. Target: >= 0.95x the bare loop's steps/s
with a metrics row every step. The DataLoader rows are reported without a target: the earlier ">= 3x a
DataLoader loop" cannot be reached at num_workers=0, where even the bare loop is only 1.2-1.5x faster."""
from __future__ import annotations

from bench.common import compare_loops
from runner.bench import set_threads


def run(quick: bool = False) -> None:
    set_threads()
    # 300 steps, 4 repeats (were 500 and 5): make bench's 10 minutes
    compare_loops("loop/", "cpu", steps=100 if quick else 300, repeats=2 if quick else 4, warmup=1)


if __name__ == "__main__":
    run()
