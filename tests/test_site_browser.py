"""The results site in a real browser: headless Chromium opens index.html and a paper page from disk.

Asserts no JavaScript error (the page's own record on `<html data-js-errors>`, which also counts scripts
that failed to load, and Chromium's console log), one index row per paper, and on the paper page its
claim table and rendered plots (plotly's SVG). Screenshots of both pages are written to the test's
temporary folder (the path is printed; `pytest -s` shows it). Skips, saying why, without `chromium`
on PATH (CI installs Debian's `chromium` with apt) or when it cannot start here.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_site import site_tree

from runner.report.cli import main
from runner.report.papers import papers

pytest.importorskip("plotly")

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run", "--hide-scrollbars",
         "--disable-extensions", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]
CONSOLE = re.compile(r":CONSOLE(?:\(\d+\))?[^\]]*\] (.*)")


def chromium(*args: str, profile: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if BROWSER is None:
        pytest.skip("chromium is not on PATH (Debian: apt-get install chromium; .ci/run installs it when it can)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    try:
        got = chromium("--dump-dom", "about:blank", profile=profile)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"chromium could not be started here: {e}")
    if got.returncode != 0 or "<html" not in got.stdout:
        pytest.skip(f"chromium could not be started here (exit {got.returncode}): {got.stderr.strip()[-400:]}")
    return profile


def open_page(page: Path, profile: Path, shot: Path, height: int) -> tuple[str, list[str]]:
    """(the DOM after scripts ran, console messages); a screenshot at `shot` (one browser start for both)."""
    got = chromium("--dump-dom", f"--screenshot={shot}", f"--window-size=1400,{height}", page.as_uri(), profile=profile)
    assert got.returncode == 0, got.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot: {got.stderr[-2000:]}"
    return got.stdout, [m.group(1) for m in CONSOLE.finditer(got.stderr)]


def assert_no_js_errors(dom: str, console: list[str], page: str) -> None:
    m = re.search(r'<html[^>]*data-js-errors="(\d+)"', dom)
    assert m, f"{page}: the page's error probe did not run (JavaScript off, or the page did not load)"
    log = re.search(r'data-js-error-log="([^"]*)"', dom)
    assert m.group(1) == "0", f"{page}: JavaScript errors: {log.group(1) if log else '?'}"
    bad = [c for c in console if re.search(r"uncaught|error|failed", c, re.I)]
    assert not bad, f"{page}: console: {bad}"


def test_index_and_paper_page_in_chromium(browser, tmp_path, monkeypatch):
    res, _ = site_tree(tmp_path, monkeypatch)
    assert main([str(res)]) == 0
    site = res / "site"
    shots = tmp_path / "screenshots"
    shots.mkdir()

    dom, console = open_page(site / "index.html", browser, shots / "index.png", 2200)
    assert_no_js_errors(dom, console, "index.html")
    rows = re.findall(r'<tr id="(\w+)" class="paper-row">', dom)
    assert [r for r in rows if r in {p["id"] for p in papers()}] == [p["id"] for p in papers()]

    dom, console = open_page(site / "papers" / "stability_gap.html", browser, shots / "stability_gap.png", 3000)
    assert_no_js_errors(dom, console, "papers/stability_gap.html")
    assert 'class="claim-table"' in dom and "P2 gap depth" in dom
    plots = re.findall(r'<div id="plot-\d+" class="plotly-graph-div.*?</svg>', dom, flags=re.S)
    assert len(plots) >= 2 and all('class="main-svg"' in p for p in plots), "plotly drew no SVG"
    assert re.search(r'class="scatterlayer[^"]*".*?<path class="js-line"', dom, flags=re.S), "no curve drawn"
    print(f"\nscreenshots: {shots / 'index.png'} {shots / 'stability_gap.png'}")
