"""One folder per paper: its claims, plots and any algorithm the paper introduces."""
