"""Reporter figures: shared style helpers, the generic figure, and a broken plot_report."""
import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from report_trees import install_experiment, toy_cfg, toy_metrics, toy_sweep, write_run

from runner.report.cli import main
from runner.report.figures import fallback_figure, main_metric, plot_fallback
from runner.report.runs import load_runs
from runner.report.style import figure, log_axes, mean_sd_band, paper_title, plot_setting, save


def _with_diverged(root, exp="toy"):
    toy_sweep(root, exp, lrs=(0.05, 0.2), methods=("a",), seeds=(0, 1, 2))
    bad = toy_metrics(0.2, 3).iloc[:16].copy()
    bad.loc[15, "loss"] = np.inf
    write_run(root, exp, "lr=0.2,method=a,seed=3", toy_cfg(0.2, "a", 3), bad, status="diverged", diverged_at=15)
    runs, _ = load_runs(root)
    return runs


def test_paper_title_uses_short_name_and_scale():
    assert paper_title("ghosts_softmax", "smoke", "loss") == "Ghosts of Softmax (smoke): loss"
    assert paper_title("not_a_paper", "paper") == "not_a_paper (paper)"


def test_mean_sd_band_and_diverged_marker(tmp_path):
    runs = _with_diverged(tmp_path)
    fast = [r for r in runs if r.cfg["optimizer"]["lr"] == 0.2]
    fig, axes = figure()
    ax = axes[0, 0]
    line = plot_setting(ax, fast, "loss", "lr=0.2", color="tab:blue")
    assert line.get_label() == "lr=0.2 (n=3)"
    expect = np.mean([toy_metrics(0.2, s).loss for s in (0, 1, 2)], axis=0)
    assert np.allclose(line.get_ydata(), expect)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    marks = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(bands) == 1 and len(marks) == 1
    x, y = marks[0].get_offsets()[0]
    assert x == 15 and y == pytest.approx(toy_metrics(0.2, 3).loss.iloc[14])  # last finite value before divergence
    assert len(ax.lines) == 2  # mean line + the diverged run's dashed line
    assert mean_sd_band(ax, fast, "no_such_metric") is None


def test_log_axes_auto_only_for_positive_data_over_decades():
    fig, axes = figure(ncols=2)
    axes[0, 0].plot([1, 2, 3], [1.0, 1e-1, 1e-4])
    axes[0, 1].plot([1, 2, 3], [1.0, 0.5, -0.1])
    log_axes(axes[0, 0], y="auto")
    log_axes(axes[0, 1], y="auto")
    assert axes[0, 0].get_yscale() == "log" and axes[0, 1].get_yscale() == "linear"


def test_saved_log_axes_keep_minor_ticks_only_over_few_decades(tmp_path):
    fig, axes = figure(ncols=2)
    wide, narrow = axes[0]
    wide.plot([1, 2, 3], [1e-12, 1e-6, 1.0])
    narrow.plot([1, 2, 3], [1.0, 10.0, 100.0])
    for ax in (wide, narrow):
        ax.set_yscale("log")
    save(fig, tmp_path / "f.png")
    assert len(wide.yaxis.get_minorticklocs()) == 0  # 12 decades: no minor ticks (clutter, and slow to draw)
    assert len(narrow.yaxis.get_minorticklocs()) > 0
    assert (tmp_path / "f.png").stat().st_size > 1000


_MATH_FIGURE = """
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
if sys.argv[2] == "shared":
    import runner.report.style  # noqa: F401 -- installs the process-wide parse cache
for i in range(2):  # the second figure reuses the first one's parses (shared) or parses anew (plain)
    fig, ax = plt.subplots(1, 2, figsize=(8, 3.6))
    x = np.geomspace(1, 1e4, 50)
    ax[0].loglog(x, 1 / x)
    ax[0].set_title(r"$\\lambda_{max}$ vs $2/\\eta$")
    ax[1].semilogy(x, np.exp(-x / 1e3))
    fig.tight_layout()
    fig.savefig(f"{sys.argv[1]}/{sys.argv[2]}{i}.png", dpi=130)
    plt.close(fig)
"""


def test_shared_mathtext_parses_give_byte_identical_pngs(tmp_path):
    """share_mathtext_parses: math-text tick labels parsed once per process instead of once per renderer
    draw the same pixels as matplotlib's own per-renderer cache."""
    import subprocess
    import sys

    script = tmp_path / "draw.py"
    script.write_text(_MATH_FIGURE)
    for mode in ("plain", "shared"):
        subprocess.run([sys.executable, str(script), str(tmp_path), mode], check=True, timeout=120)
    pngs = {p.name: p.read_bytes() for p in tmp_path.glob("*.png")}
    assert len(pngs) == 4 and len(set(pngs.values())) == 1


def test_generic_figure_one_line_per_setting_and_a_nontrivial_png(tmp_path):
    runs = _with_diverged(tmp_path / "res")
    assert main_metric(runs) == "acc"
    fig, axes = fallback_figure("toy", runs)
    loss_ax, acc_ax = axes[0]
    assert loss_ax.get_yscale() == "log" and acc_ax.get_yscale() == "linear"
    for ax in (loss_ax, acc_ax):
        assert len(ax.lines) == 3  # 2 settings' means + 1 diverged run
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2
        assert sum(isinstance(c, PathCollection) for c in ax.collections) == 1
        assert ax.get_xlabel() == "step (iterations)"
    assert "toy (smoke)" in fig._suptitle.get_text()
    labels = loss_ax.get_legend_handles_labels()[1]
    assert "lr=0.05 (n=3)" in labels and "lr=0.2 (n=3)" in labels and "lr=0.2: diverged (1)" in labels
    [png] = plot_fallback("toy", runs, tmp_path)
    img = mpimg.imread(png)
    assert png.stat().st_size > 20_000 and img.shape[0] > 300 and img.shape[1] > 800
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_broken_plot_report_falls_back_and_fails_check(tmp_path, monkeypatch):
    claims = """
    from runner.claims import Claim
    CLAIMS = [Claim("loss falls", "toy", "loss < 1", lambda df, c: df.loss.iloc[-1], lambda v: v < 1)]
    """
    plots = """
    def plot_run(df, cfg, out_dir):
        return None
    def plot_report(runs, out_dir):
        raise RuntimeError("bug in the figure code")
    """
    exp = install_experiment(tmp_path, monkeypatch, "toy_broken_plots", claims, plots)
    res = tmp_path / "res"
    toy_sweep(res, exp, lrs=(0.1,), methods=("a", "b"), seeds=(0, 1))
    assert main([str(res / exp)]) == 0
    report = (res / exp / "report.md").read_text()
    assert "bug in the figure code" in report and f"![{exp}_overview]({exp}_overview.png)" in report
    assert (res / exp / f"{exp}_overview.png").stat().st_size > 10_000
    assert main([str(res / exp), "--check"]) == 1


def test_experiment_plot_report_is_used_when_present(tmp_path, monkeypatch):
    plots = """
    from pathlib import Path
    from runner.report.style import figure, save, plot_setting, title
    def plot_report(runs, out_dir):
        fig, axes = figure()
        plot_setting(axes[0, 0], runs, "loss", "all")
        title(axes[0, 0], "toy_own_plots", "smoke", "loss")
        return [save(fig, Path(out_dir) / "own.png")]
    """
    exp = install_experiment(tmp_path, monkeypatch, "toy_own_plots", "CLAIMS = []\n", plots)
    toy_sweep(tmp_path / "res", exp, lrs=(0.1,), methods=("a",), seeds=(0, 1))
    main([str(tmp_path / "res" / exp)])
    assert (tmp_path / "res" / exp / "own.png").exists()
    assert not (tmp_path / "res" / exp / f"{exp}_overview.png").exists()
    assert "![own](own.png)" in (tmp_path / "res" / exp / "report.md").read_text()
