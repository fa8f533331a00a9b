"""Shared figure style: one place for sizes, fonts, colours and saving."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"er": "tab:blue", "finetune": "tab:red", "joint": "tab:green"}
RC = {"figure.dpi": 110, "savefig.dpi": 130, "axes.spines.top": False, "axes.spines.right": False,
      "axes.grid": True, "grid.alpha": 0.25, "font.size": 9, "legend.fontsize": 8, "legend.frameon": False}


def figure(ncols: int = 1, nrows: int = 1, width: float = 6.0, height: float = 3.6):
    with plt.rc_context(RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes


def save(fig, path: Path) -> Path:
    path = Path(path)
    with plt.rc_context(RC):
        fig.tight_layout()
        tmp = path.with_name(f".{path.stem}.tmp.png")
        fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
