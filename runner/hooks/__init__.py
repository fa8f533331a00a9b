"""Probes that run on a schedule, read the training state and return metrics (one file per probe)."""
from runner.hooks.base import Hook

__all__ = ["Hook"]
