"""optrun: one training engine, per-iteration probes and honest claim checks for optimization papers."""

__version__ = "0.1.0"
