"""Continual evaluation for lifelong learning: identifying the stability gap (De Lange et al., ICLR 2023)."""
