"""Study pages: each declared question (optbench/studies.py) as a page with its protocol, evidence and answer.

A pairwise study shows per task the paired difference with its interval and A's and B's curves side by side; a
geometry study shows per-task correlation tables and per-task panels (log axes) of each measure against the
generalisation gap. `studies.html` lists every study with its one-line answer.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from optbench.leaderboard import plots
from optbench.leaderboard.html import Cell, esc, num, page, plot_div, slug, table
from optbench.leaderboard.model import Board
from optbench.studies import GeometryResult, PairwiseResult, Study, generalisation_gap, run_study

INDEX = "studies.html"


def study_href(study: Study) -> str:
    return f"study-{slug(study.id)}.html"


def _answer_box(answer: str) -> str:
    return f'<div class="answer" id="answer"><strong>Answer.</strong> {esc(answer)}</div>'


def _interval_cell(ci: Any, digits: int = 3) -> Cell:
    return Cell(esc(ci.fmt(digits)), num(ci.estimate))


def _pair_table(rows: list, study: Study, table_id: str) -> str:
    cells = [[Cell(esc(r.task), r.task), Cell(esc(r.metric.replace("final_", "")), r.metric),
              Cell(str(r.n_pairs), r.n_pairs), Cell(esc(f"{r.mean_a:.4g}"), num(r.mean_a)),
              Cell(esc(f"{r.mean_b:.4g}"), num(r.mean_b)), _interval_cell(r.difference),
              Cell(esc(r.verdict), r.verdict)] for r in rows]
    headers = [("task", ""), ("metric", "the task's judged test metric"), ("pairs", "seeds run by both"),
               (study.a, "mean over the paired seeds"), (study.b, "mean over the paired seeds"),
               (f"{study.a} − {study.b} [95% CI]", "mean paired difference, percentile bootstrap over seed pairs"),
               ("verdict", "a side is better only when the interval excludes zero")]
    return table(headers, cells, table_id)


def _pair_curves(board: Board, res: PairwiseResult) -> str:
    """Validation/test accuracy (or loss) curves of A's and B's reported configurations, per task."""
    if board.curves is None or board.curves.empty:
        return ""
    out = []
    meta = board.everything[["trial_id", "optimizer", "task", "preset", "status"]]
    points = board.curves.merge(meta, on="trial_id", how="inner")
    colors = {res.study.a: plots.HIGHLIGHT[0], res.study.b: plots.HIGHLIGHT[1]}
    for row in res.rows:
        ids = set(row.a_trials) | set(row.b_trials)
        mine = points[points["trial_id"].isin(ids)]
        metric = row.metric.replace("final_", "")
        sel = mine[mine["name"] == metric]
        if sel.empty:
            continue
        fig = plots.curve_figure(sel, [res.study.a, res.study.b], lambda o: colors.get(o, "#7f7f7f"), "step",
                                 f"{row.task}: {metric}", metric)
        out.append(plot_div(f"study-curve-{slug(row.task)}", fig))
    return ('<h2 id="curves">Curves side by side</h2><div class="grid2">' + "".join(out) + "</div>"
            '<p class="note">Mean over the paired seeds; band: min to max.</p>') if out else ""


def pairwise_page(board: Board, res: PairwiseResult, meta: str) -> str:
    s = res.study
    body = [_answer_box(res.answer),
            f'<h2 id="protocol">Protocol</h2><p>{esc(s.protocol)}</p>']
    if res.rows:
        body += ['<h2 id="evidence">Evidence per task</h2>', _pair_table(res.rows, s, "study-pairs")]
    if res.variants:
        body += [f'<h2 id="variants">{esc(s.a)} by {esc(s.variants_by)}</h2>',
                 _pair_table(res.variants, s, "study-variants")]
    curves = _pair_curves(board, res)
    body.append(curves)
    return page(f"Study: {s.question}", "\n".join(body), meta, INDEX, plots=bool(curves))


def geometry_page(board: Board, res: GeometryResult, meta: str) -> str:
    s = res.study
    body = [_answer_box(res.answer),
            f'<h2 id="protocol">Protocol</h2><p>{esc(s.protocol)}</p>']
    if res.rows:
        cells = [[Cell(esc(r.task), r.task), Cell(esc(r.measure), r.measure), Cell(esc(r.target), r.target),
                  Cell(str(r.rho.n), r.rho.n), _interval_cell(r.rho, 2)] for r in res.rows]
        body += ['<h2 id="evidence">Rank correlations per task</h2>',
                 table([("task", ""), ("measure", ""), ("against", ""), ("trials", ""),
                        ("Spearman ρ [95% CI]", "percentile bootstrap over trials")], cells, "study-correlations")]
    if res.contrasts:
        cells = [[Cell(esc(t), t), Cell(esc(f"|ρ({a})| − |ρ({b})|"), a), _interval_cell(ci, 2)]
                 for t, a, b, ci in res.contrasts]
        body += ['<h2 id="contrast">Which measure predicts the gap better?</h2>',
                 table([("task", ""), ("contrast", "against the generalisation gap, same resamples"),
                        ("estimate [95% CI]", "")], cells, "study-contrasts")]
    figs = []
    every = board.everything
    trials = every[(every["status"] == "ok") & ~every["synthetic"].fillna(False).astype(bool)]
    if s.tasks:
        trials = trials[trials["task"].isin(list(s.tasks))]
    for task, rows in trials.groupby("task", sort=True):
        rows = rows.assign(gen_gap=generalisation_gap(rows))
        for measure in s.measures[:2]:
            if measure not in rows or pd.to_numeric(rows[measure], errors="coerce").notna().sum() < 3:
                continue
            rows[measure] = pd.to_numeric(rows[measure], errors="coerce")
            order = sorted(rows["optimizer"].astype(str).unique())
            fig = plots.geometry_figure(rows, order, board.color, measure, measure)
            fig["layout"]["title"]["text"] = esc(f"{task}: {measure} vs generalisation gap")
            if (rows[measure].dropna() > 0).all():
                fig["layout"]["yaxis"]["type"] = "log"
            figs.append(plot_div(f"study-geo-{slug(str(task))}-{slug(measure)}", fig))
    if figs:
        body += ['<h2 id="panels">Per-task panels</h2><div class="grid2">', *figs, "</div>",
                 '<p class="note">One point per ok trial on real data; log axis for positive measures.</p>']
    return page(f"Study: {s.question}", "\n".join(body), meta, INDEX, plots=bool(figs))


def render_studies(board: Board, studies: list[Study], meta: str) -> dict[str, str]:
    """Relative path -> HTML for the studies index and one page per study."""
    files: dict[str, str] = {}
    items = []
    for study in studies:
        res = run_study(study, board.everything)
        files[study_href(study)] = (pairwise_page(board, res, meta) if isinstance(res, PairwiseResult)
                                    else geometry_page(board, res, meta))
        items.append(f'<li><a href="{study_href(study)}"><strong>{esc(study.question)}</strong></a>'
                     f"<br>{esc(res.answer)}</li>")
    body = ("<ul class=studies>" + "".join(items) + "</ul>") if items else (
        '<div class="empty">No studies were declared for this board (pass <code>--studies DIR</code>).</div>')
    files[INDEX] = page("Studies", '<p class="lead">Questions this board answers, with protocol, evidence and '
                        "uncertainty.</p>" + body, meta, INDEX)
    return files
