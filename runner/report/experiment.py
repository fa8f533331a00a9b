"""One experiment's report: tables, claims, figures and `report.md`, written into its results folder."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from runner.experiments import module as experiment_module
from runner.report.claims_table import aggregate_claims, any_failed, cross_run_rows, fmt, markdown, scale_states
from runner.report.figures import main_metric, plot_fallback
from runner.report.papers import paper
from runner.report.runs import Run, Skipped, error_line
from runner.report.table import aggregate, runs_table, steps_table, write_table
from runner.results import atomic_write, write_json

SETTINGS_METRICS = 6  # columns of the settings table in report.md (all of them are in aggregate.csv)


@dataclass
class ExperimentReport:
    experiment: str
    out_dir: Path
    runs: list[Run]
    skipped: list[Skipped]
    claims: list[dict] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the experiment's own code raised (plots, claims)

    @property
    def failed(self) -> bool:
        return any_failed(self.claims) or bool(self.errors)

    def count(self, status: str) -> int:
        return sum(r.status.get("status") == status for r in self.runs)


def _module(exp: str, part: str, errors: list[str]):
    try:
        return experiment_module(exp, part)
    except Exception as e:  # noqa: BLE001 -- a broken experiment module is reported, not fatal
        errors.append(f"experiments.{exp}.{part} could not be imported ({error_line(e)})")
        return None


def evaluate(exp: str, runs: list[Run], errors: list[str]) -> list[dict]:
    mod = _module(exp, "claims", errors)
    if mod is None or not runs:
        return []
    rows = aggregate_claims(list(getattr(mod, "CLAIMS", [])), runs)
    if hasattr(mod, "cross_run_claims"):
        rows += cross_run_rows(mod.cross_run_claims, runs)
    return rows


def draw(exp: str, runs: list[Run], out_dir: Path, errors: list[str]) -> list[Path]:
    """The experiment's `plot_report`, else (or if it raises) the generic figure."""
    if not runs:
        return []
    plots = _module(exp, "plots", errors)
    if plots is not None and hasattr(plots, "plot_report"):
        try:
            return [Path(p) for p in (plots.plot_report(runs, out_dir) or [])]
        except Exception as e:  # noqa: BLE001
            errors.append(f"experiments.{exp}.plots.plot_report raised {error_line(e)}; drew the generic figure")
    try:
        return plot_fallback(exp, runs, out_dir)
    except Exception as e:  # noqa: BLE001
        errors.append(f"generic figure failed: {error_line(e)}")
        return []


def _mean_sd(row, m: str) -> str:
    mean, sd = row.get(f"{m}.mean"), row.get(f"{m}.sd")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return fmt(mean) if sd is None or math.isnan(sd) else f"{fmt(mean)} ± {sd:.2g}"


def settings_markdown(agg: pd.DataFrame, runs: list[Run]) -> str:
    if agg.empty:
        return ""
    names = [c[:-5] for c in agg.columns if c.endswith(".mean")]
    main = main_metric(runs)
    order = [m for m in ("loss", main) if m in names] + [m for m in names if m not in ("loss", main)]
    shown = order[:SETTINGS_METRICS]
    head = ["setting", "runs", "diverged", *[f"{m} (final)" for m in shown]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in agg.iterrows():
        cells = [row["setting"], f"{row['n_completed']}/{row['n_runs']}", str(row["n_diverged"]),
                 *[_mean_sd(row, m) for m in shown]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    more = f" ({len(order) - len(shown)} more metrics in `aggregate.csv`)" if len(order) > len(shown) else ""
    return "\n".join(lines) + f"\n\nMean ± SD over completed seeds of each setting{more}."


def _heading(exp: str) -> list[str]:
    p = paper(exp)
    if not p:
        return [f"# {exp}: report", ""]
    return [f"# {p['short']} (`{exp}`): report", "", f"*{p['title']}*, arXiv [{p['arxiv']}]"
            f"(https://arxiv.org/abs/{p['arxiv']})", ""]


def write_markdown(rep: ExperimentReport, agg: pd.DataFrame) -> None:
    scales = ", ".join(sorted({r.scale for r in rep.runs})) or "none"
    md = _heading(rep.experiment)
    md += [f"Scale: {scales}. {len(rep.runs)} runs read ({rep.count('completed')} completed, "
           f"{rep.count('diverged')} diverged), {len(rep.skipped)} left out.", ""]
    if rep.errors:
        md += ["## Reporter errors", "", *[f"- {e}" for e in rep.errors], ""]
    md += ["## Claims", ""]
    if rep.claims:
        states = scale_states(rep.claims)
        md += [*[f"- **{scale}: {st}** ({detail})" for scale, (st, detail) in states.items()], "",
               "A paper counts as reproduced at a scale when all its headline claims pass there. Per-run "
               "claims pass at a scale when every completed run they apply to passes; cross-run claims "
               "compare runs.", "", markdown(rep.claims), ""]
    else:
        md += ["_No claims evaluated (none declared, or no readable run)._", ""]
    if not agg.empty:
        md += ["## Settings", "", settings_markdown(agg, rep.runs), "",
               "Tables: `runs.csv` (one row per run, config flattened), `aggregate.csv` (per setting), "
               "`steps.csv` (every logged step of every run).", ""]
    if rep.figures:
        md += ["## Figures", "", *[f"![{Path(f).stem}]({Path(f).name})" for f in rep.figures], ""]
    noted = [r for r in rep.runs if r.notes]
    if noted:
        md += ["## Runs read with problems", "", *[f"- `{r.name}`: {'; '.join(r.notes)}" for r in noted], ""]
    if rep.skipped:
        md += ["## Left out", "", *[f"- `{s.path.name}`: {s.reason}" for s in rep.skipped], ""]
    atomic_write(rep.out_dir / "report.md", "\n".join(md))


def report_experiment(exp: str, runs: list[Run], skipped: list, out_dir: Path) -> ExperimentReport:
    """Write runs.csv, aggregate.csv, steps.csv, claims.json, figures and report.md into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = ExperimentReport(exp, out_dir, runs, [s if isinstance(s, Skipped) else Skipped(*s) for s in skipped])
    table = runs_table(runs)
    agg = aggregate(table)
    if runs:
        write_table(table, out_dir / "runs.csv")
        write_table(agg, out_dir / "aggregate.csv")
        write_table(steps_table(runs), out_dir / "steps.csv")
    rep.claims = evaluate(exp, runs, rep.errors)
    write_json(out_dir / "claims.json", rep.claims)
    rep.figures = draw(exp, runs, out_dir, rep.errors)
    write_markdown(rep, agg)
    return rep
