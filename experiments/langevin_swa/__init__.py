"""Improved high-dimensional estimation with Langevin dynamics and stochastic weight averaging (Wei, Damian & Lee, ICLR 2026)."""
