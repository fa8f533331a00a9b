"""One paper's page of the results site (`results/site/papers/<id>.html`); see `runner/report/site.py`."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from runner import experiments
from runner.report.claims_table import KIND_TITLES, fmt, measured_text
from runner.report.papers import paper
from runner.report.runs import error_line
from runner.report.site import Paper, anchor, badge, badge_status, esc, page, pass_badge, rel, run_name, runs_cell
from runner.report.site_md import render


def _module(exp: str, part: str):
    try:
        return experiments.module(exp, part)
    except Exception:  # noqa: BLE001 -- the report already names a module that cannot be imported
        return None


def card_html(exp: str, path: Path | None) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (AttributeError, OSError, UnicodeDecodeError):  # no experiment folder (not implemented), or unreadable
        return "<p class='muted'>No card (<code>experiments/{}/README.md</code>) in this installation.</p>".format(
            esc(exp))
    return f"<section class='card'>{render(text)}</section>"


def _runs_used(c: dict, rep, page_dir: Path) -> str:
    by_name = {r.name: r for r in rep.runs}
    used = c.get("runs") or []
    if used:
        items = []
        for u in used:
            r = by_name.get(u["run"])
            name = f'<a href="{rel(r.path, page_dir)}/">{esc(u["run"])}</a>' if r else esc(u["run"])
            err = f" <span class='muted'>{esc(u['error'])}</span>" if u.get("error") else ""
            items.append(f"<li>{pass_badge(u['passed'])} {name}: {esc(fmt(u['measured']))}{err}</li>")
        return (f"<details><summary>{len(used)} run{'s' if len(used) != 1 else ''}</summary>"
                f"<ul class='claims small'>{''.join(items)}</ul></details>")
    if c.get("form") == "cross-run":
        scales = str(c["scale"]).split(",")
        rs = [r for r in rep.runs if r.scale in scales]
        links = "".join(f'<li><a href="{rel(r.path, page_dir)}/">{esc(r.name)}</a></li>' for r in rs)
        return (f"<details><summary>cross-run: {len(rs)} run(s) at {esc(c['scale'])}</summary>"
                f"<ul class='claims small'>{links}</ul></details>") if rs else ""
    return "<span class='muted'>none</span>"


def claims_html(rep, page_dir: Path) -> str:
    if rep is None or not rep.claims:
        return "<p class='muted'>No claims evaluated (no readable run in this results tree, or none declared).</p>"
    parts = []
    for kind, title in KIND_TITLES.items():
        mine = [c for c in rep.claims if c.get("kind", "supporting") == kind]
        if not mine:
            continue
        rows = []
        for c in mine:
            name = esc(c["name"]) + (" <span class='muted small'>(cross-run)</span>" if c.get("form") == "cross-run" else "")
            count = f" <span class='muted small'>{c['n_passed']}/{c['n']}</span>" if c.get("n") else ""
            rows.append(f"<tr><td><b>{name}</b></td><td>{esc(c['scale'])}</td><td class='small'>{esc(c['paper'])}</td>"
                        f"<td class='num'>{esc(measured_text(c))}</td><td class='small'>{esc(c['criterion'])}</td>"
                        f"<td>{pass_badge(c['passed'])}{count}</td><td class='small'>{_runs_used(c, rep, page_dir)}"
                        f"{'<br>' + esc(c['note']) if c.get('note') else ''}</td></tr>")
        parts.append(f"<h3>{esc(title)}</h3><table class='claim-table'><thead><tr><th>claim</th><th>scale</th>"
                     "<th>paper</th><th>measured: mean [min, max]</th><th>criterion</th><th>pass</th>"
                     "<th>runs used, note</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    return "\n".join(parts)


def curves_html(exp: str, rep) -> tuple[str, int]:
    """(html, number of plots): per study, one interactive figure per key metric."""
    from runner.report.site_plots import figure_html, key_metrics, metric_figure, study_groups

    if rep is None or not rep.runs:
        return "<p class='muted'>No readable runs: nothing to draw.</p>", 0
    if importlib.util.find_spec("plotly") is None:
        return "<p class='muted'>The interactive curves need plotly (<code>pip install plotly</code>).</p>", 0
    try:
        metrics = key_metrics(_module(exp, "claims"), _module(exp, "plots"), rep.runs)
    except Exception as e:  # noqa: BLE001 -- the page is still written, saying why there are no curves
        return f"<p class='muted'>Key metrics could not be found: {esc(error_line(e))}</p>", 0
    if not metrics:
        return "<p class='muted'>The runs log no numeric metric to draw.</p>", 0
    parts, n = [], 0
    for study, runs in study_groups(rep.runs).items():
        scales = "/".join(sorted({r.scale for r in runs}))
        divs = []
        for m in [m for m in metrics if any(m in r.metrics for r in runs)]:
            try:
                fig = metric_figure(runs, m, f"{m}: mean ± SD over seeds")
                divs.append(figure_html(fig, f"plot-{n}"))
                n += 1
            except Exception as e:  # noqa: BLE001
                divs.append(f"<p class='muted'>{esc(m)}: could not be drawn ({esc(error_line(e))})</p>")
        if divs:
            parts.append(f"<h3>Study <code>{esc(study)}</code> <span class='muted small'>({esc(scales)}, "
                         f"{len(runs)} runs)</span></h3><div class='plots'>{''.join(divs)}</div>")
    head = ("<p class='muted small'>Key metrics: " + ", ".join(f"<code>{esc(m)}</code>" for m in metrics)
            + ". One line per arm (setting): mean over its completed seeds, band ± SD (geometric on a log axis); "
            "diverged seeds dashed, × at the divergence step. Drag to zoom, double-click to reset, click a legend "
            "entry to hide it.</p>")
    return head + "".join(parts), n


def figures_html(rep, page_dir: Path) -> str:
    figs = [Path(f) for f in (rep.figures if rep else []) if Path(f).exists()]
    if not figs:
        return "<p class='muted'>No figures.</p>"
    return "".join(f'<figure><a href="{rel(f, page_dir)}"><img loading="lazy" src="{rel(f, page_dir)}" '
                   f'alt="{esc(f.stem)}"></a><figcaption>{esc(f.name)}</figcaption></figure>' for f in figs)


def runs_list_html(exp: str, rep, page_dir: Path) -> str:
    if rep is None or (not rep.runs and not rep.skipped):
        return "<p class='muted'>No run folders of this paper in this results tree.</p>"
    rows = [f'<tr><td><a href="{rel(r.path, page_dir)}/">{run_name(r.name)}</a></td><td>{esc(r.study or "")}</td>'
            f'<td>{esc(r.arm or "")}</td><td class="num">{esc(r.seed)}</td><td>{esc(r.scale)}</td>'
            f'<td>{badge_status(r.status.get("status", ""))}'
            f'{esc(f" at step {r.diverged_at}" if r.diverged else "")}</td>'
            f'<td><a href="../runs.html#{anchor(exp, r.name)}">config, files</a></td></tr>'
            for r in sorted(rep.runs, key=lambda r: r.name)]
    rows += [f'<tr><td><a href="{rel(s.path, page_dir)}/">{run_name(s.path.name)}</a></td><td colspan="4"></td>'
             f'<td>{badge_status("left out")} <span class="small">{esc(s.reason)}</span></td>'
             f'<td><a href="../runs.html#{anchor(exp, s.path.name)}">config, files</a></td></tr>'
             for s in sorted(rep.skipped, key=lambda s: s.path.name)]
    return ("<table class='run-table'><thead><tr><th>run</th><th>study</th><th>arm</th><th>seed</th><th>scale</th>"
            "<th>status</th><th></th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def paper_html(site: Path, info: Paper, failed_targets=()) -> str:
    page_dir = Path(site) / "papers"
    exp, rep = info.exp, info.rep
    p = paper(exp) or {}
    overall, detail = info.state
    links = [f'<a href="../index.html#{esc(exp)}">all papers</a>']
    if p.get("arxiv"):
        links.append(f'<a href="https://arxiv.org/abs/{esc(p["arxiv"])}">arXiv {esc(p["arxiv"])}</a>')
    if rep is not None:
        links.append(f'<a href="{rel(rep.out_dir, page_dir)}/">results folder</a>')
        if (rep.out_dir / "report.md").exists():
            links.append(f'<a href="{rel(rep.out_dir / "report.md", page_dir)}">report.md</a>')
    states = " ".join(f"{esc(s)}: {badge(st, d)}" for s, (st, d) in info.cells.items())
    notes = []
    if exp in failed_targets:
        notes.append(f"<span class='badge fail'>make {esc(exp)} exited non-zero</span>")
    if rep is not None and rep.errors:
        notes.append("<b>Reporter errors:</b><ul>" + "".join(f"<li>{esc(e)}</li>" for e in rep.errors) + "</ul>")
    curves, n_plots = curves_html(exp, rep)
    body = (f"<h1>{esc(p.get('title', exp))}</h1><p><code>{esc(exp)}</code> · {' · '.join(links)}</p>"
            f"<p>State: {states} <span class='muted small'>({esc(overall)}{': ' + esc(detail) if detail else ''}; "
            f"runs: {esc(runs_cell(rep))})</span></p>{''.join(notes)}"
            f"<h2 id='claims'>Claims</h2>{claims_html(rep, page_dir)}"
            f"<h2 id='curves'>Key metrics per arm</h2>{curves}"
            f"<h2 id='figures'>Figures</h2>{figures_html(rep, page_dir)}"
            f"<h2 id='runs'>Runs</h2>{runs_list_html(exp, rep, page_dir)}"
            f"<h2 id='card'>The paper's card</h2>{card_html(exp, info.card)}")
    return page(f"{p.get('short', exp)}: optrun results", body, depth=1, plotly=n_plots > 0)
