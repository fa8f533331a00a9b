"""Metric definitions as small, unit-tested pieces of pure code."""
