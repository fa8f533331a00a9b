"""`results/site/`: the offline results site, written by `optrun-report` next to `REPORT.md`.

- `index.html`: the 30 papers (and any other experiment in the tree), the state per scale from the
  headline claims, the headline claims (ours against the paper's), runs, links;
- `papers/<id>.html`: one page per paper (`site_paper.py`): the state, the claim table with the runs
  each claim used, interactive curves of its key metrics per arm (mean ± SD over seeds, divergence
  marked), the PNG figures, its runs, and its card (`experiments/<id>/README.md`) rendered;
- `runs.html`: every run folder found (read or left out): config, status, links to its folder and files;
- `plotly.min.js` (written once, next to the pages; no CDN, the site works offline) and `site.css`.

Every link is relative, so the site works on a results tree copied from a cluster, opened from disk.
A paper without runs in the tree is shown as not run. Each page records its JavaScript errors in the
`data-js-errors` attribute of `<html>` (the browser test reads it).
"""
from __future__ import annotations

import html
import importlib.util
import os
import re
from pathlib import Path
from typing import NamedTuple

import yaml

from runner import experiments
from runner.experiments import SCALES
from runner.report.claims_table import fmt, scale_states
from runner.report.overview import runs_cell, state  # noqa: F401 -- runs_cell re-exported for site_paper
from runner.report.papers import papers
from runner.report.runs import read_config

CSS = """
:root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#fff; --head:#f6f7f9; --ok:#157f3b; --okbg:#e7f6ec;
  --bad:#b42318; --badbg:#fdecea; --warn:#b54708; --warnbg:#fef4e6; --none:#475467; --nonebg:#f2f4f7; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg);
  background: var(--bg); margin: 0; }
main { max-width: 1320px; margin: 0 auto; padding: 18px 28px 60px; }
nav.top { background: #101828; color: #fff; padding: 9px 28px; font-size: 13px; }
nav.top a { color: #d0d5dd; margin-right: 18px; text-decoration: none; } nav.top a:hover { color: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 30px 0 10px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; } h3 { font-size: 15px; margin: 20px 0 8px; }
a { color: #175cd3; } .muted { color: var(--muted); } .small { font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 14px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; }
tbody tr:hover { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
  white-space: nowrap; }
.badge.reproduced, .badge.pass { color: var(--ok); background: var(--okbg); }
.badge.not-reproduced, .badge.fail { color: var(--bad); background: var(--badbg); }
.badge.runs-fail, .badge.runs, .badge.diverged { color: var(--warn); background: var(--warnbg); }
.badge.not-run, .badge.not-yet-implemented, .badge.na { color: var(--none); background: var(--nonebg); }
.claims li { margin: 2px 0; } ul.claims { margin: 0; padding-left: 16px; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 10px 18px; }
.plots > div { border: 1px solid var(--line); border-radius: 6px; padding: 4px; min-height: 370px; }
figure { margin: 10px 0 20px; } figure img { max-width: 100%; border: 1px solid var(--line); border-radius: 4px; }
figcaption { font-size: 12px; color: var(--muted); }
pre { background: #f6f8fa; padding: 8px 10px; border-radius: 4px; overflow-x: auto; font-size: 12px; }
code { background: #f2f4f7; padding: 0 3px; border-radius: 3px; font-size: 12px; } pre code { background: none; padding: 0; }
details > summary { cursor: pointer; color: #175cd3; white-space: nowrap; }
section.card { border: 1px solid var(--line); border-radius: 6px; padding: 4px 18px 10px; background: #fcfcfd; }
section.card table { width: auto; }
"""

# Records JavaScript errors (and scripts that failed to load) on <html data-js-errors="N" data-js-error-log="...">.
ERROR_PROBE = """<script>(function(){var d=document.documentElement;d.setAttribute('data-js-errors','0');
function note(m){d.setAttribute('data-js-errors',String(+d.getAttribute('data-js-errors')+1));
d.setAttribute('data-js-error-log',(d.getAttribute('data-js-error-log')||'')+m+' | ');}
window.addEventListener('error',function(e){var t=e.target;note(e.message||('could not load '+((t&&(t.src||t.href))||'a resource')));},true);
window.addEventListener('unhandledrejection',function(e){note('unhandled rejection: '+e.reason);});})();</script>"""


def atomic_write(path: Path, text: str) -> None:
    """Write UTF-8 text atomically (a reader never sees half a page)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def esc(s) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def rel(target: Path, page_dir: Path) -> str:
    """A relative URL from a page in `page_dir` to `target` (forward slashes, each part quoted)."""
    from urllib.parse import quote

    return quote(os.path.relpath(Path(target), Path(page_dir)).replace(os.sep, "/"))


def page(title: str, body: str, depth: int, plotly: bool = False) -> str:
    """A whole HTML page; `depth` is how many folders below the site root it lives."""
    up = "../" * depth
    scripts = f'<script src="{up}plotly.min.js"></script>' if plotly else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{esc(title)}</title>\n'
            f'{ERROR_PROBE}\n<link rel="stylesheet" href="{up}site.css">\n{scripts}\n</head>\n<body>\n'
            f'<nav class="top"><a href="{up}index.html">optrun: the 30 papers</a>'
            f'<a href="{up}runs.html">run index</a></nav>\n<main>\n{body}\n</main>\n</body>\n</html>\n')


def state_class(st: str) -> str:
    return st.split(":")[0].strip().replace(" ", "-").replace(",", "")


def badge(text: str, title: str = "") -> str:
    return f'<span class="badge {state_class(text)}" title="{esc(title)}">{esc(text)}</span>'


def pass_badge(passed) -> str:
    return {True: '<span class="badge pass">pass</span>', False: '<span class="badge fail">FAIL</span>'}.get(
        passed, '<span class="badge na">n/a</span>')


def skipped_scale(s) -> str | None:
    cfg, _ = read_config(s.path)
    return str(cfg.get("scale", "smoke")) if cfg else None


def scale_cells(exp: str, rep, known: bool) -> dict[str, tuple[str, str]]:
    """{scale: (state, detail)}: from headline claims where runs of that scale were read; `known`: the
    experiment has a folder here (else it reads 'not yet implemented' when not run)."""
    if rep is None or (not rep.runs and not rep.skipped):
        word = "not run" if known else "not yet implemented"
        return {s: (word, "") for s in SCALES}
    states = {s: v for s, v in scale_states(rep.claims).items() if v[0] != "no headline claim evaluated"}
    out = {}
    for s in sorted(set(SCALES) | {r.scale for r in rep.runs}, key=lambda s: (SCALES.index(s) if s in SCALES else len(SCALES), s)):
        read = [r for r in rep.runs if r.scale == s]
        left = [k for k in rep.skipped if skipped_scale(k) == s]
        if s in states:
            out[s] = states[s]
        elif read:
            out[s] = ("runs", f"{len(read)} run(s) read; no headline claim evaluated at this scale")
        elif left:
            out[s] = ("runs fail", f"{len(left)} run(s) left out: {left[0].reason}")
        else:
            out[s] = ("not run", "")
    return out


def headline_html(rep) -> str:
    """Each evaluated headline claim: pass/fail, ours (mean [min, max]) against the criterion, the paper's text."""
    if rep is None:
        return ""
    rows = [c for c in rep.claims if c.get("kind") == "headline" and c["passed"] is not None]
    items = []
    for c in rows:
        paper_text = c.get("paper") or ""
        short = paper_text if len(paper_text) <= 110 else paper_text[:107] + "..."
        items.append(f"<li>{pass_badge(c['passed'])} <b>{esc(c['name'])}</b> <span class='muted'>({esc(c['scale'])})"
                     f"</span>: ours <b>{esc(fmt(c['measured']))}</b>, criterion {esc(c['criterion'])}"
                     f"<br><span class='muted small' title='{esc(paper_text)}'>paper: {esc(short)}</span></li>")
    return f"<ul class='claims'>{''.join(items)}</ul>" if items else ""


class Paper(NamedTuple):
    """What the index and a paper's page both show, worked out once per experiment."""

    exp: str
    rep: object  # its ExperimentReport, None when the tree has no run folder of it
    state: tuple[str, str]  # (overall state, detail), as in REPORT.md
    cells: dict  # {scale: (state, detail)}
    card: Path | None  # experiments/<id>/README.md


def paper_info(reports: dict) -> dict[str, Paper]:
    folders = experiments.folders()
    out = {}
    for exp in [p["id"] for p in papers()] + sorted(set(reports) - {p["id"] for p in papers()}):
        rep = reports.get(exp)
        card = folders[exp] / "README.md" if exp in folders else None
        out[exp] = Paper(exp, rep, state(exp, rep), scale_cells(exp, rep, exp in folders), card)
    return out


def index_html(site: Path, infos: dict[str, Paper], failed_targets=()) -> str:
    rows, counts = [], {}
    meta = {p["id"]: p for p in papers()}
    for exp, info in infos.items():
        p = meta.get(exp, {})
        n, title, arxiv, rep, cells = p.get("n", ""), p.get("title", exp), p.get("arxiv", ""), info.rep, info.cells
        overall, detail = info.state
        counts[overall] = counts.get(overall, 0) + 1
        links = [f'<a href="papers/{esc(exp)}.html">page</a>']
        if rep is not None and (rep.out_dir / "report.md").exists():
            links.append(f'<a href="{rel(rep.out_dir / "report.md", site)}">report.md</a>')
        if arxiv:
            links.append(f'<a href="https://arxiv.org/abs/{esc(arxiv)}">arXiv</a>')
        note = f"<br><span class='badge fail'>make {esc(exp)} exited non-zero</span>" if exp in failed_targets else ""
        rows.append(
            f'<tr id="{esc(exp)}" class="paper-row"><td class="num">{esc(n)}</td>'
            f'<td><a href="papers/{esc(exp)}.html"><b>{esc(title)}</b></a><br><code>{esc(exp)}</code>{note}</td>'
            + "".join(f"<td>{badge(cells[s][0], cells[s][1])}</td>" for s in SCALES)
            + f'<td>{headline_html(rep)}<span class="muted small">{esc(detail) if not rep or not rep.claims else ""}'
            f'</span></td><td class="small">{esc(runs_cell(rep))}</td><td class="small">{" · ".join(links)}</td></tr>')
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    failed = (f"<p><span class='badge fail'>smoke targets that exited non-zero: {esc(', '.join(failed_targets))}"
              "</span></p>") if failed_targets else ""
    body = (
        "<h1>optrun: reproduction status of the 30 papers</h1>"
        "<p class='muted'>Written by <code>optrun-report</code> from the results tree above this folder. A paper is "
        "<b>reproduced</b> at a scale when every headline claim (the paper's own) passes there; claim values are "
        "computed from the logged metrics. Hover a state for its detail.</p>"
        f"<p>Summary: {esc(summary)}.</p>{failed}"
        "<table id='papers'><thead><tr><th>#</th><th>paper</th>"
        + "".join(f"<th>{esc(s)}</th>" for s in SCALES)
        + "<th>headline claims: ours vs the paper</th><th>runs</th><th>links</th></tr></thead><tbody>\n"
        + "\n".join(rows) + "\n</tbody></table>")
    return page("optrun: the 30 papers", body, depth=0)


def run_files(path: Path, page_dir: Path) -> str:
    try:
        entries = sorted(path.iterdir(), key=lambda p: (p.is_dir(), p.name))
    except OSError:
        return ""
    shown = [e for e in entries if not e.name.startswith(".")][:24]
    return " · ".join(f'<a href="{rel(e, page_dir)}">{esc(e.name)}{"/" if e.is_dir() else ""}</a>' for e in shown)


def anchor(exp: str, name: str) -> str:
    """The id of a run's row in runs.html (letters, digits and `._=,-` only)."""
    return re.sub(r"[^\w.=,-]", "_", f"{exp}--{name}")


def run_name(name: str) -> str:
    """A run name that may wrap after its commas (names hold every override)."""
    return esc(name).replace(",", ",<wbr>")


def _config_text(run=None, path: Path | None = None) -> str:
    if run is not None:
        return yaml.safe_dump(run.cfg, sort_keys=False, default_flow_style=None, width=110)
    try:
        return (path / "config.yaml").read_text()[:20000]
    except (OSError, UnicodeDecodeError):
        return "(no readable config.yaml)"


def runs_html(site: Path, reports: dict) -> str:
    parts = ["<h1>Run index</h1><p class='muted'>Every run folder under the results tree, read or left out, with "
             "its config, status and files. Links open the run folder itself (relative to this page).</p>"]
    for exp, rep in sorted(reports.items()):
        parts.append(f'<h2 id="{esc(exp)}"><a href="papers/{esc(exp)}.html">{esc(exp)}</a> '
                     f'<span class="muted small">{esc(runs_cell(rep))}</span></h2>')
        parts.append("<table class='run-table'><thead><tr><th>run</th><th>study</th><th>arm</th><th>seed</th><th>scale</th>"
                     "<th>status</th><th>steps</th><th>wall&nbsp;(s)</th><th>files</th><th>config</th></tr></thead><tbody>")
        for r in sorted(rep.runs, key=lambda r: r.name):
            st = r.status.get("status", "")
            extra = f" at {r.diverged_at}" if r.diverged else ""
            wall = r.status.get("wall_s")
            parts.append(
                f'<tr id="{anchor(exp, r.name)}"><td><a href="{rel(r.path, site)}/">{run_name(r.name)}</a>'
                + (f"<br><span class='muted small'>{esc('; '.join(r.notes))}</span>" if r.notes else "")
                + f"</td><td>{esc(r.study or '')}</td><td>{esc(r.arm or '')}</td><td class='num'>{esc(r.seed)}</td>"
                f"<td>{esc(r.scale)}</td><td>{badge_status(st)}{esc(extra)}</td>"
                f"<td class='num'>{esc(r.status.get('step'))}</td>"
                f"<td class='num'>{esc(f'{wall:.1f}' if isinstance(wall, (int, float)) else '')}</td>"
                f"<td class='small'>{run_files(r.path, site)}</td>"
                f"<td><details><summary>config</summary><pre>{esc(_config_text(r))}</pre></details></td></tr>")
        for s in sorted(rep.skipped, key=lambda s: s.path.name):
            parts.append(
                f'<tr id="{anchor(exp, s.path.name)}"><td><a href="{rel(s.path, site)}/">{run_name(s.path.name)}</a></td>'
                f"<td colspan='4' class='muted'>left out</td><td colspan='3'>{badge_status('left out')} "
                f"<span class='small'>{esc(s.reason)}</span></td><td class='small'>{run_files(s.path, site)}</td>"
                f"<td><details><summary>config</summary><pre>{esc(_config_text(path=s.path))}</pre></details></td></tr>")
        parts.append("</tbody></table>")
    if not reports:
        parts.append("<p>No run folders in this results tree.</p>")
    return page("optrun: run index", "\n".join(parts), depth=0)


def badge_status(st: str) -> str:
    cls = {"completed": "pass", "diverged": "diverged", "left out": "fail"}.get(st, "na")
    return f'<span class="badge {cls}">{esc(st)}</span>'


def write_plotly_js(site: Path) -> Path | None:
    """plotly.js, once, next to the pages (rewritten only when the installed plotly's differs); None
    without plotly (the pages then say that the curves need it)."""
    if importlib.util.find_spec("plotly") is None:
        return None
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    path = site / "plotly.min.js"
    if not path.exists() or path.stat().st_size != len(js.encode()):
        atomic_write(path, js)
    return path


def write_site(site: Path, reports: dict, failed_targets=()) -> Path:
    """Write the site into `site` (index.html, papers/, runs.html, plotly.min.js, site.css); its index path."""
    from runner.report.site_paper import paper_html

    site = Path(site)
    (site / "papers").mkdir(parents=True, exist_ok=True)
    write_plotly_js(site)
    atomic_write(site / "site.css", CSS.lstrip())
    infos = paper_info(reports)
    for exp, info in infos.items():
        atomic_write(site / "papers" / f"{exp}.html", paper_html(site, info, failed_targets))
    atomic_write(site / "runs.html", runs_html(site, reports))
    atomic_write(site / "index.html", index_html(site, infos, list(failed_targets)))
    return site / "index.html"
