"""Numerical solvers used inside training loops (SciML papers): each runs in float64 under `no_grad` where
the paper's method does, counts its iterations, and is unit-tested against a direct solve."""
