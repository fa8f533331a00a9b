"""Bilevel optimization under unbounded smoothness: BO-REP (Hao, Gong, Liu, ICLR 2024, arXiv 2401.09587)."""
