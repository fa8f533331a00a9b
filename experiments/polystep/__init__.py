"""Training Non-Differentiable Networks via Optimal Transport: PolyStep (Le, arXiv 2605.01928, 2026)."""
