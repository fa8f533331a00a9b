"""Trainers define what one step is; the engine (`runner.engine`) owns the loop around it."""
