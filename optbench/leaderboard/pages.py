"""The pages: overview, one per task, one per optimizer, training curves and the geometry view.

Each function returns a complete HTML document built from a Board. Text from results and plugins goes
through `esc`; the figure data through JSON islands (see html.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from optbench.leaderboard import plots
from optbench.leaderboard.html import Cell, badge, esc, fmt, num, page, plot_div, slug, table
from optbench.leaderboard.model import TUNED, Board, problem_key
from optbench.leaderboard.uncertainty import separated
from optbench.settings import speed_reference
from optbench.specs import ColumnSpec
from optbench.summary import fmt_mean_std

CURVES = [("train", "loss", "Training loss"), ("test", "test_loss", "Test loss"),
          ("test", "test_accuracy", "Test accuracy")]


def task_href(task: str) -> str:
    return f"task-{slug(task)}.html"


def optimizer_href(name: str) -> str:
    return f"optimizer-{slug(name)}.html"


def meta_line(board: Board) -> str:
    p = board.provenance()
    devices = "; ".join(f"{esc(d)} ({n} trials)" if len(p["devices"]) > 1 else esc(d) for d, n in p["devices"].items())
    parts = [f"<strong>Machine:</strong> {devices or 'none recorded'}"]
    if p["dates"]:
        span = p["dates"][0] if len(p["dates"]) == 1 else f"{p['dates'][0]} to {p['dates'][-1]}"
        parts.append(f"<strong>Run:</strong> {esc(span)}")
    if p["commits"]:
        parts.append(f"<strong>Commit:</strong> {esc(', '.join(p['commits']))}")
    if p["torch"]:
        parts.append(f"<strong>torch:</strong> {esc(', '.join(p['torch']))}")
    parts.append(f"<strong>Built:</strong> {esc(p['built_at'])}")
    return " · ".join(parts)


def no_results(what: str = "") -> str:
    extra = f" {esc(what)}" if what else ""
    return (f'<div class="empty" id="no-results"><strong>No results</strong>{extra}.<br>Run '
            f"<code>optbench run -o {esc(speed_reference())} --results DIR</code> and rebuild with "
            "<code>optbench leaderboard build --results DIR --out SITE</code>.</div>")


# --- shared cells ----------------------------------------------------------------------------------
def synthetic_badge(dataset: Any) -> str:
    return badge("synthetic", "synthetic", f"synthetic data: {dataset}" if dataset else "synthetic data")


def status_cell(r: pd.Series) -> Cell:
    """ok/seeds plus a badge per non-ok status, so a failed or diverged seed is never silent."""
    if int(r.get("skipped", 0) or 0) and not int(r["seeds"]):  # not applicable: neither a pass nor a failure
        return Cell(badge("n/a", "skipped", "not applicable to this task"), -1.0)
    marks = "".join(badge(f"{int(r[s])} {s}", s) for s in ("diverged", "failed", "timeout") if int(r.get(s, 0) or 0))
    if int(r["ok"]) == 0:
        marks = badge("no ok seed", "failed") + marks
    frac = r["ok"] / r["seeds"] if r["seeds"] else 0.0
    return Cell(f"{int(r['ok'])}/{int(r['seeds'])}{marks}", frac)


def mean_std_cell(r: pd.Series, col: str, digits: int = 4) -> Cell:
    mean, std = r.get(f"{col}_mean"), r.get(f"{col}_std")
    return Cell(esc(fmt_mean_std(mean, std, digits)), num(mean))


def target_cell(r: pd.Series, col: str, digits: int) -> Cell:
    """Time or steps to target over the seeds that reached it, with how many did."""
    reached, seeds = int(r["reached"]), int(r["seeds"])
    if not reached:
        return Cell(f"— <span class=note>(0/{seeds})</span>", None, "miss")
    text = esc(fmt_mean_std(r[f"{col}_mean"], r[f"{col}_std"], digits))
    return Cell(f"{text} <span class=note>({reached}/{seeds})</span>", num(r[f"{col}_mean"]))


def ratio_cell(r: pd.Series) -> Cell:
    med, lo, hi = (num(r.get(c)) for c in ("opt_step_ratio", "opt_step_ratio_lo", "opt_step_ratio_hi"))
    if med is not None and lo is not None and hi is not None and r.get("speed_ref") == speed_reference():
        ref = esc(speed_reference())
        return Cell(f'<span title="optimizer step ÷ {ref}, interleaved in each trial: median over seeds '
                    f'(95% interval)">{med:.2f}× <span class=note>({lo:.2f}–{hi:.2f})</span></span>', med)
    v = num(r.get("step_time_ratio"))
    if v is None:
        return Cell(f'<span title="no {esc(speed_reference())} trial from the same run on this task">—</span>', None)
    return Cell(f"{v:.2f}×", v)


def _core_headers() -> list[tuple[str, str]]:
    ref = esc(speed_reference())  # a setting (optbench.settings), not a name written here
    return [
        ("seeds ok", "seeds with status ok / seeds run; badges count diverged, failed and timed-out seeds"),
        ("test accuracy", "final test accuracy, mean ± std over ok seeds"),
        ("test loss", "final test loss, mean ± std over ok seeds"),
        ("time to target (s)", "training seconds to reach the task's target, mean ± std over seeds that reached it"),
        ("steps to target", "steps to reach the target, mean ± std over seeds that reached it"),
        (f"step time ×{ref}", f"optimizer step ÷ {ref}'s, timed interleaved in each trial: median over seeds "
                              f"(95% interval); older rows: median step time ÷ {ref}'s in the same run "
                              f"(1.00× = as fast as {ref})"),
        ("state MB", "optimizer state memory in MiB, mean over ok seeds"),
    ]


def result_headers(columns: Sequence[ColumnSpec]) -> list[tuple[str, str]]:
    """The core result headers, then one per metric column the results declare (the metric plugin's own words)."""
    metric = [(c.header, f"{c.description or c.name}{f' ({c.unit})' if c.unit else ''} at the end, mean ± std")
              for c in columns]
    core = _core_headers()
    return [*core[:-1], *metric, core[-1]]


def result_cells(r: pd.Series, columns: Sequence[ColumnSpec] = ()) -> list[Cell]:
    return [
        status_cell(r),
        mean_std_cell(r, "final_test_accuracy"),
        mean_std_cell(r, "final_test_loss"),
        target_cell(r, "time_to_target_s", 3),
        target_cell(r, "steps_to_target", 4),
        ratio_cell(r),
        *(mean_std_cell(r, c.name) for c in columns),
        Cell(esc(fmt(r.get("optimizer_state_mb_mean"), 3)), num(r.get("optimizer_state_mb_mean"))),
    ]


def row_class(r: pd.Series) -> str:
    classes = []
    if int(r["ok"]) == 0:
        classes.append("all-failed")
    if int(r["ok"]) < int(r["seeds"]):
        classes.append("has-failures")
    if bool(r["synthetic"]):
        classes.append("synthetic")
    return " ".join(classes)


def failed_trials_table(trials: pd.DataFrame, table_id: str) -> str:
    bad = trials[~trials["status"].isin(["ok", "skipped"])].sort_values(["task", "preset", "optimizer", "seed"])
    if bad.empty:
        return '<p class="note">Every trial finished with status ok.</p>'
    rows = []
    for _, t in bad.iterrows():
        step = num(t.get("diverged_step"))
        rows.append([
            Cell(f'<a href="{task_href(t["task"])}">{esc(t["task"])}</a>/{esc(t["preset"])}',
                 f"{t['task']}/{t['preset']}"),
            Cell(f'<a href="{optimizer_href(t["optimizer"])}">{esc(t["optimizer"])}</a>', str(t["optimizer"])),
            Cell(esc(t["seed"]), num(t["seed"])),
            Cell(badge(str(t["status"]), str(t["status"])), str(t["status"])),
            Cell("—" if step is None else f"{int(step)}", step),
            Cell(f"<code>{esc(t.get('error') or '')}</code>", str(t.get("error") or ""), "long"),
        ])
    headers = [("task", ""), ("optimizer", ""), ("seed", ""), ("status", ""), ("at step", "step it diverged at"),
               ("error", "the error recorded in the trial row")]
    return table(headers, rows, table_id)


def json_block(obj: Any) -> str:
    return f"<pre>{esc(json.dumps(obj, indent=2, sort_keys=True, default=str))}</pre>"


def link_or_text(value: Any) -> str:
    s = "" if value is None else str(value)
    if s.startswith(("https://", "http://")):
        return f'<a href="{esc(s)}" rel="noopener noreferrer">{esc(s)}</a>'
    return esc(s) or "—"


# --- overview --------------------------------------------------------------------------------------
def overview_page(board: Board, title: str = "Optimizer leaderboard", href: str = "index.html") -> str:
    meta = meta_line(board)
    if board.empty:
        return page(title, view_note(board) + no_results("in this results directory") + problems_box(board), meta,
                    href)
    rk, s = board.ranking, board.summary
    lo, hi = int(s["seeds"].min()), int(s["seeds"].max())
    seeds = f"{hi} seed(s) each" if lo == hi else f"{lo} to {hi} seeds each"
    any_syn = bool(s["synthetic"].any())
    n_real = len(board.ratios.index) if not board.only_synthetic else 0
    scope = (f"the {n_real} real-data task(s); the {len(board.diagnostics_ratios.index)} synthetic (diagnostic) "
             "task(s) are ranked apart below" if not board.only_synthetic else
             "synthetic (diagnostic) tasks only — these results hold no real-data task, so this is a diagnostic, "
             "not a benchmark ranking")
    # count what this view shows: on a tuned board, the tuned optimizers (the others are on the untuned board)
    n_shown = int(s["optimizer"].nunique())
    kind = "tuned optimizer(s)" if board.view == TUNED else "optimizers"
    lead = (f'<p class="lead"><strong>{n_shown}</strong> {kind} on <strong>{len(board.problems)}'
            f"</strong> task(s), {seeds} ({len(board.trials)} trials). Ranked on {scope}, by the "
            "AlgoPerf-style score: the area under the performance profile of time-to-target for τ from 1 to 4, "
            f"divided by 3 (1 = fastest to the target on every task). {leader_sentence(rk)}</p>")
    lead += view_note(board)
    if any_syn:
        lead += (f"<p class=note>Rows marked {synthetic_badge('')} used synthetic data (quadratics or "
                 "synthetic stand-ins for datasets), not real data.</p>")
    body = [lead, "<h2 id=ranking>Ranking across tasks</h2>", ranking_table(board)]
    if not board.diagnostics_ranking.empty:
        body += ["<h2 id=diagnostics>Diagnostics: synthetic-data tasks, ranked apart</h2>",
                 "<p class=note>Quadratics with known spectra and synthetic stand-ins for datasets check the "
                 "harness and the geometry metrics; they are not part of the headline ranking above.</p>",
                 ranking_table(board, board.diagnostics_ranking, "diagnostics-ranking")]
    body.append("<h2 id=profile>Performance profile</h2>")
    body.append('<figure class="svg-plot" id="profile-figure">'
                + plots.profile_svg(board.ratios, list(rk["optimizer"]), board.color)
                + '<figcaption class="caption">ρ(τ) is the fraction of tasks on which an optimizer reached the target '
                "within τ times the fastest optimizer's time. A task counts only if every seed reached its target; "
                "the time is the mean over seeds. The ranking's top ten are coloured, the others grey (hover a line "
                "for its name).</figcaption></figure>")
    unsolved = [p for p in board.ratios.index if not (board.ratios.loc[p] < math.inf).any()]
    if unsolved:
        body.append(f"<p class=note>No optimizer reached the target on every seed of: {esc(', '.join(unsolved))} "
                    "(these tasks count for nobody in the profile).</p>")
    body.append("<h2 id=wins>Who wins where</h2>")
    body.append(wins_table(board))
    body.append("<h2 id=tasks>Tasks</h2><ul class=links>" + "".join(
        f'<li><a href="{task_href(t)}">{esc(t)}</a></li>' for t in board.tasks) + "</ul>")
    body.append("<h2 id=optimizers>Optimizers</h2><ul class=links>" + "".join(
        f'<li><a href="{optimizer_href(o)}">{esc(o)}</a></li>' for o in board.optimizers) + "</ul>")
    body.append("<h2 id=failed>Failed, diverged and timed-out trials</h2>")
    body.append(failed_trials_table(board.everything, "failed-trials"))
    body.append(problems_box(board))
    return page(title, "\n".join(body), meta, href)


def untuned_page(board: Board) -> str:
    """The defaults board beside a tuned one: the same tables, titled so nobody mistakes it for tuned numbers."""
    return overview_page(board, "Untuned defaults (not the tuned leaderboard)", UNTUNED_HREF)


UNTUNED_HREF = "untuned.html"


def view_note(board: Board) -> str:
    """Says what was tuned and what was not, on every overview."""
    if board.view == TUNED:
        budgets = sorted({int(b) for b in pd.to_numeric(board.trials.get("study_budget"), errors="coerce").dropna()})
        budget = f"{', '.join(map(str, budgets))} configuration(s) per optimizer and task" if budgets else "a study"
        return ("<p class=note id=view-note><strong>Tuned:</strong> each optimizer at the configuration its tuning "
                f"study selected on <em>validation</em> metrics (budget: {esc(budget)}, drawn from the optimizer's "
                "declared search space; see its page), reported on the test metrics of fresh seeds. "
                f'The untuned defaults are on a <a href="{UNTUNED_HREF}">separate board</a>.</p>')
    return ("<p class=note id=view-note><strong>Untuned:</strong> every optimizer at its authors' default "
            "hyperparameters (or the one configuration it was run with, named in the tables); nothing on this "
            "board was tuned, so it ranks defaults, not optimizers.</p>")


def leader_sentence(rk: pd.DataFrame) -> str:
    """Names a leader only when one reached a target and the score intervals separate it from the runner-up."""
    if rk.empty or float(rk.iloc[0]["score"]) == 0.0:
        return "No optimizer reached the target on every seed of any task: there is no leader."
    best = rk.iloc[0]
    name = f'<a href="{optimizer_href(best["optimizer"])}"><strong>{esc(best["optimizer"])}</strong></a>'
    score = f"score {best['score']:.3f} [{best['score_lo']:.2f}, {best['score_hi']:.2f}]"
    tied = rk[rk["position"] == best["position"]]
    if len(tied) > 1:
        return f"Tied first: {', '.join(esc(o) for o in tied['optimizer'])} ({score})."
    if len(rk) > 1:
        second = rk.iloc[1]
        if not separated(best["score_lo"], best["score_hi"], second["score_lo"], second["score_hi"]):
            return (f"First: {name} ({score}), but its interval overlaps {esc(second['optimizer'])}'s "
                    f"[{second['score_lo']:.2f}, {second['score_hi']:.2f}]: the lead is not established.")
    return f"Leader: {name} ({score})."


def problems_box(board: Board) -> str:
    if not board.read_problems:
        return ""
    items = "".join(f"<li><code>{esc(p)}</code></li>" for p in board.read_problems)
    return (f'<div class="warnbox" id="read-problems"><strong>Skipped unreadable result files:</strong>'
            f"<ul>{items}</ul></div>")


def ranking_table(board: Board, ranking: pd.DataFrame | None = None, table_id: str = "ranking") -> str:
    ranking = board.ranking if ranking is None else ranking
    rows, classes = [], []
    for _, r in ranking.iterrows():
        opt = r["optimizer"]
        marks = synthetic_badge("") if r["synthetic"] else ""
        if r["not_ok"]:
            marks += badge(f"{int(r['not_ok'])} not ok", "failed", "trials that failed, diverged or timed out")
        rows.append([
            Cell(f"{int(r['position'])}{'=' if r.get('tied') else ''}", int(r["position"])),
            Cell(f'<a href="{optimizer_href(opt)}">{esc(opt)}</a>{marks}', str(opt)),
            Cell(f"{r['score']:.3f} <span class=note>[{r['score_lo']:.2f}, {r['score_hi']:.2f}]</span>",
                 float(r["score"])),
            Cell(f"{int(r['rank_lo'])}–{int(r['rank_hi'])}" if r["rank_lo"] != r["rank_hi"] else str(int(r["rank_lo"])),
                 int(r["rank_lo"])),
            Cell(f"{r['area']:.3f}", float(r["area"])),
            Cell(f"{int(r['won'])}/{int(r['problems'])}", int(r["won"])),
            Cell(f"{int(r['reached'])}/{int(r['problems'])}", int(r["reached"])),
            Cell(esc(fmt(r["mean_rank"], 3)), num(r["mean_rank"])),
            ratio_cell(r),
            Cell(f"{int(r['ok'])}/{int(r['trials'])}", r["ok"] / r["trials"] if r["trials"] else 0.0),
        ])
        classes.append("synthetic" if r["synthetic"] else "")
    headers = [("#", "position by score; '=' marks a tie (equal scores share a position)"), ("optimizer", ""),
               ("score [95% CI]", "∫₁⁴ ρ(τ) dτ / 3; interval: every cell's seeds resampled, the whole profile redone"),
               ("rank range", "95% range of the position over those resamples"), ("∫ρ", "∫₁⁴ ρ(τ) dτ"),
               ("fastest on", "tasks where it reached the target first"),
               ("reached target", "tasks where every seed reached the target"),
               ("mean rank", "mean per-task rank (time-to-target, then final quality)"),
               (f"step time ×{esc(speed_reference())}",
                f"median over tasks of the step-time ratio to {esc(speed_reference())}"),
               ("trials ok", "trials with status ok / trials run")]
    return table(headers, rows, table_id, classes,
                 caption="Equal scores are a tie ('='), listed by mean per-task rank; two optimizers whose score "
                         "intervals overlap are not separated by this evidence.")


def wins_table(board: Board) -> str:
    s, ratios = board.summary, board.ratios
    order = list(board.ranking["optimizer"])
    rows, classes = [], []
    for problem in board.problems:
        grp = s[s["problem"] == problem]
        first = grp.iloc[0]
        task, preset = first["task"], first["preset"]
        marks = synthetic_badge(first["dataset"]) if grp["synthetic"].any() else ""
        row = [Cell(f'<a href="{task_href(task)}">{esc(task)}</a>/{esc(preset)}{marks}', problem)]
        fastest = grp[grp["profile_time"] < math.inf].sort_values("profile_time")
        if fastest.empty:
            row.append(Cell("nobody reached the target", None, "miss"))
        else:
            w = fastest.iloc[0]
            row.append(Cell(f'{esc(w["optimizer"])} <span class=note>({w["profile_time"]:.3g} s)</span>',
                            str(w["optimizer"])))
        top = str(grp.sort_values("rank").iloc[0]["optimizer"])
        row.append(Cell(esc(top), top))
        for opt in order:
            src = ratios if problem in ratios.index else board.diagnostics_ratios
            r = src.loc[problem, opt] if problem in src.index and opt in src.columns else math.inf
            ran = bool((grp["optimizer"] == opt).any())
            if not ran:
                row.append(Cell("—", None, "miss"))
            elif r == math.inf:
                row.append(Cell('<span title="did not reach the target on every seed">✗</span>', None, "miss"))
            else:
                row.append(Cell(f"{r:.2f}", float(r), "best" if r == 1.0 else ""))
        rows.append(row)
        classes.append("synthetic" if grp["synthetic"].any() else "")
    headers = [("task", ""), ("fastest to target", "every seed reached; mean time"),
               ("rank 1", "best by time-to-target, then final quality")]
    headers += [(o, f"time-to-target ÷ fastest on this task for {o}") for o in order]
    return table(headers, rows, "wins", classes,
                 caption="Cells: time-to-target divided by the fastest optimizer's (1.00 = fastest); "
                         "✗ = not every seed reached the target; — = not run.")


# --- per task --------------------------------------------------------------------------------------
def task_page(board: Board, task: str) -> str:
    info = board.task_info(task)
    s = board.summary[board.summary["task"] == task]
    trials = board.everything[board.everything["task"] == task]
    body = []
    if info.get("summary"):
        body.append(f'<p class="lead">{esc(info["summary"])}</p>')
    datasets = sorted(set(trials["dataset"].dropna().astype(str)))
    if datasets:
        syn = synthetic_badge(", ".join(datasets)) if trials["synthetic"].fillna(False).any() else ""
        body.append(f"<p>Dataset: {esc(', '.join(datasets))}{syn}</p>")
    targets = trials.dropna(subset=["target_name"]).drop_duplicates(["preset", "target_name"])
    for _, t in targets.iterrows():
        body.append(f"<p class=note>Target ({esc(t['preset'])}): {esc(t['target_name'])} = "
                    f"{esc(fmt(t['target_value']))} (time-to-target counts training time only).</p>")
    for preset in sorted(s["preset"].unique()):
        grp = s[s["preset"] == preset].sort_values("rank")
        body.append(f"<h2 id=\"preset-{esc(slug(preset))}\">Results · preset {esc(preset)}</h2>")
        rows, classes = [], []
        for _, r in grp.iterrows():
            marks = synthetic_badge(r["dataset"]) if r["synthetic"] else ""
            rows.append([Cell(str(int(r["rank"])), int(r["rank"])),
                         Cell(f'<a href="{optimizer_href(r["optimizer"])}">{esc(r["optimizer"])}</a>{marks}',
                              str(r["optimizer"])),
                         *result_cells(r, board.columns)])
            classes.append(row_class(r))
        headers = [("rank", "time-to-target on every seed first, then final quality"), ("optimizer", ""),
                   *result_headers(board.columns)]
        body.append(table(headers, rows, f"results-{slug(preset)}", classes,
                          caption="mean ± std over seeds with status ok; click a header to sort."))
        body.append(curves_section(board, task, preset))
    body.append(configurations_section(board, task))
    body.append(sensitivity_section(board, task))
    body.append("<h2 id=failed>Failed, diverged and timed-out trials</h2>")
    body.append(failed_trials_table(trials, "failed-trials"))
    if trials.empty:
        body = [no_results(f"for task {task}")]
    return page(f"Task: {task}", "\n".join(body), meta_line(board), plots=True)


def config_cell(r: pd.Series) -> Cell:
    label = str(r.get("config") or r["optimizer"])
    marks = synthetic_badge(r["dataset"]) if r["synthetic"] else ""
    if bool(r.get("tuned")):
        marks += badge("selected", "tuned", f"selected by study {r.get('study')} on validation; fresh seeds")
    return Cell(f'<a href="{optimizer_href(r["optimizer"])}">{esc(label)}</a>{marks}', label)


def configurations_section(board: Board, task: str) -> str:
    """Every configuration run on this task (grids, defaults, tuned), each its own cell: never pooled."""
    c = board.configs[board.configs["task"] == task] if not board.configs.empty else board.configs
    if c.empty:
        return ""
    rows, classes = [], []
    for _, r in c.sort_values(["preset", "optimizer", "config"]).iterrows():
        rows.append([Cell(esc(r["preset"]), str(r["preset"])), config_cell(r),
                     *result_cells(r, board.columns)])
        classes.append(row_class(r))
    headers = [("preset", ""), ("configuration", "optimizer[changed hyperparameters]; a bare name is its defaults"),
               *result_headers(board.columns)]
    return ("<h2 id=configurations>Every configuration</h2>"
            + table(headers, rows, "configurations", classes,
                    caption="one row per configuration; seeds are averaged only within a configuration. Tuning "
                            "search trials are in the sensitivity plot below, not here."))


def sensitivity_section(board: Board, task: str) -> str:
    cells = board.search[board.search["task"] == task] if not board.search.empty else board.search
    if cells.empty:
        return ""
    figs = []
    for preset in sorted(cells["preset"].unique()):
        fig = plots.lr_sensitivity_figure(cells[cells["preset"] == preset], board.optimizers, board.color,
                                          f"{task}/{preset}")
        if fig is not None:
            figs.append(plot_div(f"lr-sensitivity-{slug(task + '-' + preset)}", fig))
    if not figs:
        return ""
    return ("<h2 id=lr-sensitivity>Learning-rate sensitivity</h2>" + "".join(figs)
            + '<p class="note">One marker per configuration (mean over its ok seeds, tuning search trials included); '
              "a configuration with no ok seed is left out. Other hyperparameters vary too where a grid or study "
              "varied them.</p>")


# --- per optimizer ---------------------------------------------------------------------------------
def optimizer_page(board: Board, name: str) -> str:
    info = board.optimizer_info(name)
    facts = [("summary", esc(info.get("summary")) or "—"), ("plugin", esc(info.get("plugin")) or "—")]
    if info.get("entry_point"):
        facts.append(("entry point", f"<code>{esc(info['entry_point'])}</code>"))
    facts += [("plugin version", esc(info.get("plugin_version")) or "—"), ("paper", link_or_text(info.get("paper")))]
    if info.get("needs"):
        facts.append(("closure needs", esc(info["needs"])))
    src = {"recorded": "the plugin's own record, written with the results", "registry": "the installed registry"}.get(
        info["source"], "the hyperparameters recorded in the results")
    body = ["<dl class=facts>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"]
    body.append(f"<h2 id=defaults>Defaults</h2><p class=note>From {src}.</p>")
    body.append(json_block(info.get("defaults")) if info.get("defaults") is not None else "<p>—</p>")
    if info["hparams"]:
        body.append("<h3>Hyperparameters used in these results</h3>")
        body.extend(json_block(_maybe_json(h)) for h in info["hparams"])
    body.append(studies_section(board, name))
    s = board.summary[board.summary["optimizer"] == name].sort_values("problem")
    body.append("<h2 id=results>Results on every task</h2>")
    if s.empty:
        body.append(no_results(f"for optimizer {name}"))
    else:
        rows, classes = [], []
        per_problem = board.summary["problem"].value_counts()
        for _, r in s.iterrows():
            n_here = int(per_problem[r["problem"]])
            marks = synthetic_badge(r["dataset"]) if r["synthetic"] else ""
            rows.append([Cell(f'<a href="{task_href(r["task"])}">{esc(r["task"])}</a>/{esc(r["preset"])}{marks}',
                              r["problem"]),
                         Cell(f"{int(r['rank'])}/{n_here}", int(r["rank"])), *result_cells(r, board.columns)])
            classes.append(row_class(r))
        headers = [("task", ""), ("rank", "rank among the optimizers run on this task"),
                   *result_headers(board.columns)]
        body.append(table(headers, rows, "optimizer-results", classes))
    body.append("<h2 id=failed>Failed, diverged and timed-out trials</h2>")
    body.append(failed_trials_table(board.trials_of(name), "failed-trials"))
    return page(f"Optimizer: {name}", "\n".join(body), meta_line(board))


def studies_section(board: Board, name: str) -> str:
    """The tuning protocol behind this optimizer's tuned numbers: budget and search space per study."""
    t = board.everything
    if "study" not in t or t.empty:
        return ""
    mine = board.trials_of(name)
    mine = mine[mine["study"].notna()]
    if mine.empty:
        return ("<h2 id=tuning>Tuning</h2><p class=note>Not tuned in these results: every number is at the "
                "hyperparameters listed.</p>")
    rows = []
    for study, grp in mine.groupby("study"):
        budget = pd.to_numeric(grp.get("study_budget"), errors="coerce").dropna()
        space = grp["search_space"].dropna().astype(str) if "search_space" in grp else pd.Series(dtype=str)
        chosen = grp[grp["study_role"] == "final"]["config"].dropna()
        rows.append([Cell(esc(study), str(study)), Cell(esc(grp["task"].iloc[0]), str(grp["task"].iloc[0])),
                     Cell(str(int(budget.iloc[0])) if len(budget) else "—",
                          num(budget.iloc[0]) if len(budget) else None),
                     Cell(f"<code>{esc(space.iloc[0]) if len(space) else '—'}</code>", "", "long"),
                     Cell(esc(chosen.iloc[0]) if len(chosen) else "—", str(chosen.iloc[0]) if len(chosen) else "")])
    return ("<h2 id=tuning>Tuning</h2>"
            + table([("study", ""), ("task", ""), ("budget", "configurations tried"),
                     ("search space", "what the study sampled from"), ("selected", "chosen on validation")],
                    rows, "studies"))


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- curves ----------------------------------------------------------------------------------------
def curve_points(board: Board) -> pd.DataFrame:
    if board.curves is None or board.curves.empty:
        return pd.DataFrame(columns=["trial_id", "step", "wall_time_s", "split", "name", "value", "optimizer",
                                     "task", "preset", "status"])
    meta = board.trials[["trial_id", "optimizer", "task", "preset", "status"]]
    return board.curves.merge(meta, on="trial_id", how="inner")


def curves_section(board: Board, task: str, preset: str, points: pd.DataFrame | None = None) -> str:
    pts = curve_points(board) if points is None else points
    pts = pts[(pts["task"] == task) & (pts["preset"] == preset)]
    ranked = board.summary[(board.summary["task"] == task) & (board.summary["preset"] == preset)]
    order = list(ranked.sort_values("rank")["optimizer"])  # this task's best first
    figs = []
    key = slug(problem_key(task, preset))
    color = plots.figure_colors(order[: plots.VISIBLE_LINES], board.color)
    for split, name, label in CURVES:
        sel = pts[(pts["split"] == split) & (pts["name"] == name)]
        if sel.empty:
            continue
        for x, xl in (("step", "steps"), ("wall_time_s", "seconds")):
            fig = plots.curve_figure(sel, order, color, x, f"{label} vs {xl}", label)
            figs.append(plot_div(f"curve-{key}-{slug(split + '-' + name)}-{xl}", fig))
    if not figs:
        return '<p class="note">No training curves recorded for this task.</p>'
    more = f" The best {plots.VISIBLE_LINES} on this task are drawn; click a legend entry to show or hide one." \
        if len(order) > plots.VISIBLE_LINES else ""
    return (f'<div class="grid2" id="curves-{esc(slug(preset))}">' + "".join(figs) + "</div>"
            f'<p class="note">Lines: mean over seeds; bands: min to max over seeds.{more}</p>')


def curves_page(board: Board) -> str:
    """An index: each task's curves live on its own page (one page per task keeps every page small)."""
    if board.empty:
        return page("Training curves", no_results(), meta_line(board), "curves.html")
    items = []
    for problem in board.problems:
        grp = board.summary[board.summary["problem"] == problem].iloc[0]
        task, preset = grp["task"], grp["preset"]
        marks = synthetic_badge(grp["dataset"]) if grp["synthetic"] else ""
        n = int((board.summary["problem"] == problem).sum())
        items.append(f'<li><a href="{task_href(task)}#curves-{esc(slug(preset))}">{esc(task)}/{esc(preset)}</a>'
                     f"{marks} <span class=note>({n} optimizer(s))</span></li>")
    body = ('<p class="lead">Training loss, validation and test metrics against steps and seconds, per task: mean '
            "over seeds with a min–max band. Each task's page draws its best "
            f"{plots.VISIBLE_LINES} in distinct colours; the others are one legend click away.</p>"
            '<ul class="links" id="curve-index">' + "".join(items) + "</ul>")
    return page("Training curves", body, meta_line(board), "curves.html")


# --- geometry --------------------------------------------------------------------------------------
def geometry_page(board: Board) -> str:
    if board.empty:
        return page("Geometry", no_results(), meta_line(board), "geometry.html")
    t = board.trials.copy()
    t["gen_gap"] = pd.to_numeric(t["final_test_loss"], errors="coerce") - pd.to_numeric(
        t["final_train_loss"], errors="coerce")
    geometry = [(c.name, c.description or c.name) for c in board.columns]  # what the metric plugins declared
    for col, _ in geometry:
        t[col] = pd.to_numeric(t[col], errors="coerce")
    body = ['<p class="lead">Does flatness predict generalisation here? Per task, one point per trial: the '
            "geometry metric at the end of training against the generalisation gap (final test loss − final train "
            "loss), on a log axis where the values are positive. Tasks are never pooled: their scales differ. The "
            '<a href="studies.html">studies</a> test the question with rank correlations and intervals.</p>']
    any_plot = False
    for task, rows in t.groupby("task", sort=True):
        order = sorted(rows["optimizer"].astype(str).unique())
        color = plots.figure_colors(order, board.color)
        figs = []
        for col, label in geometry:
            have = rows[rows[col].notna() & rows["gen_gap"].notna()]
            if have.empty:
                continue
            fig = plots.geometry_figure(have, order, color, col, label)
            fig["layout"]["title"]["text"] = esc(f"{task}: {label}")
            if (have[col] > 0).all():
                fig["layout"]["yaxis"]["type"] = "log"
            figs.append(plot_div(f"geometry-{slug(str(task))}-{col}", fig))
        marks = synthetic_badge(", ".join(sorted(set(rows["dataset"].dropna().astype(str))))) \
            if rows["synthetic"].fillna(False).astype(bool).any() else ""
        any_plot = any_plot or bool(figs)
        body.append(f'<h2 id="geometry-{esc(slug(str(task)))}">{esc(task)}{marks}</h2>')
        body.append('<div class="grid2">' + "".join(figs) + "</div>" if figs else
                    f'<div class="empty" id="no-geometry-{esc(slug(str(task)))}">No trial on this task recorded a '
                    "geometry metric (its metric plugin was not installed or not run).</div>")
    body.append("<h2 id=points>Per-trial values</h2>")
    rows, classes = [], []
    for _, r in t.sort_values(["task", "preset", "optimizer", "seed"]).iterrows():
        marks = synthetic_badge(r["dataset"]) if bool(r["synthetic"]) else ""
        status = "" if r["status"] == "ok" else badge(str(r["status"]), str(r["status"]))
        rows.append([
            Cell(f'<a href="{task_href(r["task"])}">{esc(r["task"])}</a>/{esc(r["preset"])}{marks}',
                 f"{r['task']}/{r['preset']}"),
            Cell(f'<a href="{optimizer_href(r["optimizer"])}">{esc(r["optimizer"])}</a>{status}', str(r["optimizer"])),
            Cell(esc(r["seed"]), num(r["seed"])),
            *[Cell(esc(fmt(r[c])), num(r[c])) for c in ("gen_gap", *(name for name, _ in geometry))],
        ])
        classes.append("synthetic" if bool(r["synthetic"]) else "")
    body.append(table([("task", ""), ("optimizer", ""), ("seed", ""), ("gen. gap", "final test − final train loss"),
                       *((c.header, c.description) for c in board.columns)], rows, "geometry-points", classes))
    return page("Geometry", "\n".join(body), meta_line(board), "geometry.html", plots=any_plot)

