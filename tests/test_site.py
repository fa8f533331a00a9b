"""results/site/: the offline results site (structure, relative links, partial trees, no network)."""
from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from report_trees import TOY_CLAIMS, install_experiment, toy_metrics, toy_sweep, write_run

from runner.report.cli import main
from runner.report.overview import implemented
from runner.report.papers import papers
from runner.report.site_md import render

pytest.importorskip("plotly")


def site_tree(tmp_path: Path, monkeypatch) -> tuple[Path, str]:
    """A partial results tree: stability_gap (two arms x two seeds, a diverged seed, a failed run) and a toy
    experiment outside the 30 (claims, cross-run claims); every other paper not run. (results dir, toy id)"""
    res = tmp_path / "results"
    for arm in ("er", "finetune"):
        for seed in (0, 1):
            cfg = {"study": "split_digits", "arm": arm, "seed": seed, "trainer": {"method": arm}}
            write_run(res, "stability_gap", f"split_digits.{arm}.seed={seed}", cfg,
                      toy_metrics(0.1 if arm == "er" else 0.05, seed))
    bad = toy_metrics(0.05, 2)
    bad.loc[bad.step >= 20, "loss"] = np.inf
    write_run(res, "stability_gap", "split_digits.finetune.seed=2", {"study": "split_digits", "arm": "finetune",
              "seed": 2, "trainer": {"method": "finetune"}}, bad[bad.step <= 20], status="diverged", diverged_at=20)
    write_run(res, "stability_gap", "split_digits.er.seed=9", {"study": "split_digits", "arm": "er", "seed": 9},
              toy_metrics(0.1, 9), status="failed", error="OptrunError: boom")
    exp = install_experiment(tmp_path, monkeypatch, "toy_site_exp", TOY_CLAIMS)
    toy_sweep(res, exp, lrs=(0.05, 0.2), methods=("a",), seeds=(0, 1))
    return res, exp


class Links(HTMLParser):
    """Every script src, stylesheet/link href, img src and a href of a page, and its element ids."""

    def __init__(self):
        super().__init__()
        self.scripts, self.refs, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        for key in ("href", "src"):
            if a.get(key) and tag in ("a", "link", "img", "script"):
                self.refs.append(a[key])


def parse(path: Path) -> Links:
    p = Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def check_links(site: Path) -> int:
    """Every relative link of every page resolves to a file or folder (and a #fragment to an id); returns how many."""
    n = 0
    for page in sorted(site.rglob("*.html")):
        for ref in parse(page).refs:
            parts = urlsplit(ref)
            if parts.scheme in ("http", "https"):
                continue
            assert not parts.scheme and not ref.startswith("/"), f"{page.name}: absolute link {ref}"
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            assert target.exists(), f"{page.relative_to(site)}: broken link {ref}"
            if parts.fragment and target.suffix == ".html":
                assert unquote(parts.fragment) in parse(target).ids, f"{page.name}: no #{parts.fragment} in {target.name}"
            n += 1
    return n


@pytest.fixture
def site(tmp_path, monkeypatch):
    res, exp = site_tree(tmp_path, monkeypatch)
    assert main([str(res)]) == 0
    return res, res / "site", exp


def test_site_structure_index_and_run_index(site):
    res, site, exp = site
    for f in ("index.html", "runs.html", "site.css", "plotly.min.js"):
        assert (site / f).is_file(), f
    ids = [p["id"] for p in papers()]
    assert {p.stem for p in (site / "papers").glob("*.html")} == {*ids, exp}
    index = (site / "index.html").read_text()
    rows = re.findall(r'<tr id="(\w+)" class="paper-row">(.*?)</tr>', index, flags=re.S)
    assert [r[0] for r in rows] == [*ids, exp]
    row = dict(rows)
    for pid in ids:  # a partial tree: every paper but one shown as not run (or not implemented)
        if pid != "stability_gap":
            assert ("not run" if implemented(pid) else "not yet implemented") in row[pid]
    gap = row["stability_gap"]
    assert "not reproduced" in gap and "P2 gap depth" in gap and "ours" in gap and "paper:" in gap
    assert "5 read, 1 diverged, 1 left out" in gap and 'href="../stability_gap/report.md"' in gap
    runs = (site / "runs.html").read_text()
    assert runs.count("<tr id=") == 6 + 4  # stability_gap: 5 read + 1 left out; toy: 4
    assert "failed at step" in runs and "config.yaml" in runs and "diverged" in runs


def test_paper_pages_claims_curves_figures_card(site):
    res, site, exp = site
    gap = (site / "papers" / "stability_gap.html").read_text()
    assert "class='claim-table'" in gap and "P2 gap depth" in gap and "could not measure" in gap
    assert '<script src="../plotly.min.js"></script>' in gap
    assert gap.count('class="plotly-graph-div"') >= 2  # loss and acc (the claims read columns not logged)
    assert "diverged at step 20" in gap and "split_digits.finetune.seed=2" in gap
    assert "<section class='card'>" in gap and "Stability gap" in gap
    toy = (site / "papers" / f"{exp}.html").read_text()
    assert "large lr beats small lr" in toy and "cross-run" in toy and "plotly-graph-div" in toy
    assert f'<img loading="lazy" src="../../{exp}/{exp}_overview.png"' in toy  # the PNG figure, in place
    not_run = (site / "papers" / "sgd_stability.html").read_text()
    assert "No run folders of this paper" in not_run and "plotly.min.js" not in not_run
    assert "<section class='card'>" in not_run and "not run" in not_run


def test_site_is_offline_and_relative_and_survives_a_copy(site, tmp_path):
    res, site, exp = site
    for page in site.rglob("*.html"):
        links = parse(page)
        assert all(not re.match(r"(https?:)?//", s) for s in links.scripts), (page.name, links.scripts)
        assert all(not re.match(r"(https?:)?//", r) for r in links.refs if r.endswith(".css"))
        assert str(tmp_path) not in " ".join(links.refs)
    assert check_links(site) > 50
    copy = tmp_path / "copied" / "results"
    shutil.copytree(res, copy)
    shutil.rmtree(res)
    assert check_links(copy / "site") > 50


def test_no_site_flag_and_one_experiment_folder(tmp_path, monkeypatch):
    res, exp = site_tree(tmp_path, monkeypatch)
    assert main([str(res), "--no-site"]) == 0 and not (res / "site").exists()
    assert main([str(res / exp)]) == 0 and not (res / exp / "site").exists()
    out = tmp_path / "elsewhere"
    assert main([str(res / exp), "--site", str(out)]) == 0
    assert (out / "papers" / f"{exp}.html").is_file() and check_links(out) > 0


def test_key_metrics_from_the_claims_or_declared(tmp_path, monkeypatch):
    from runner.experiments import module
    from runner.report.runs import load_runs
    from runner.report.site_plots import key_metrics

    res, exp = site_tree(tmp_path, monkeypatch)
    runs = [r for r in load_runs(res)[0] if r.experiment == exp]
    claims = module(exp, "claims")
    assert key_metrics(claims, None, runs) == ["loss"]  # read by its claims; 'gap' is not logged
    monkeypatch.setattr(claims, "SITE_METRICS", ["acc", "nope", "loss"], raising=False)
    assert key_metrics(claims, None, runs) == ["acc", "loss"]
    assert key_metrics(None, None, runs) == ["loss", "acc"]  # no claims: loss and the main metric


def test_card_markdown_renderer():
    md = ("# Title `x`\n<!-- optrun:claims:smoke -->\n**Paper.** A *b* [arXiv](https://arxiv.org/abs/1) "
          "[local](studies.yaml) <script>alert(1)</script>\n\n- one\n  continued\n  - nested\n- two\n\n"
          "| a | b |\n|---|---|\n| 1 \\| x | `c` |\n\n```bash\nmake <x>\n```\n")
    out = render(md)
    assert "<h1>Title <code>x</code></h1>" in out and "optrun:claims" not in out
    assert '<strong>Paper.</strong> A <em>b</em> <a href="https://arxiv.org/abs/1">arXiv</a> local' in out
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<ul><li>one continued<ul><li>nested</li></ul></li><li>two</li></ul>" in out
    assert "<td>1 | x</td><td><code>c</code></td>" in out and "<pre><code>make &lt;x&gt;</code></pre>" in out
