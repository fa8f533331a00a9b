"""Benchmarks: one file `bench_<topic>.py` per topic, each defining `run(quick: bool = False) -> None`
that records its comparisons with `runner.bench.record`. `python -m bench` (`make bench`) runs them all."""
