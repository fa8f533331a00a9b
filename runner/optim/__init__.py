"""Optimizers and learning-rate schedules that torch does not ship, usable by any experiment as config choices."""
