"""`optbench results`: mean ± std over seeds per task × optimizer configuration, as a table or JSON."""

from __future__ import annotations

import math
from pathlib import Path

import click
from rich.table import Table

from optbench.cli.context import DEFAULT_RESULTS, CliContext, cli_context


@click.command("results")
@click.option("--results", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON records.")
def results_cmd(results: Path, as_json: bool) -> None:
    """Summarise the results: mean ± std over seeds per task × optimizer configuration."""
    from optbench.store import Store

    print_summary(cli_context(), Store(results), lambda df: df, as_json=as_json)


def _reached(r) -> str:
    """Steps to target over the seeds that reached it; the count only when some seeds did not."""
    from optbench.summary import fmt_mean_std

    if not r["reached"]:
        return "—"
    steps = fmt_mean_std(r["steps_to_target_mean"], r["steps_to_target_std"], 3)
    return steps if r["reached"] == r["ok"] else f"{steps} ({r['reached']}/{r['ok']})"


def print_summary(cli: CliContext, store, select, as_json: bool = False) -> None:
    """Print the summary of the rows `select` keeps from STORE (a table, or JSON records)."""
    from rich.markup import escape

    from optbench.settings import speed_reference
    from optbench.summary import fmt_mean_std, metric_columns, summarize

    res = store.read()
    for problem in res.problems:
        cli.err_console.print(f"[yellow]skipped[/yellow] {problem}", highlight=False, soft_wrap=True)
    ref = speed_reference()
    trials = select(res.trials)
    metric_cols = metric_columns(trials, res.columns)  # what the metric plugins declared in the files
    summary = summarize(trials, columns=metric_cols)
    if as_json:
        # double_precision=15: pandas rounds to 10 decimals by default, which zeroes small losses
        click.echo(summary.to_json(orient="records", indent=2, double_precision=15))
        return
    if summary.empty:
        cli.console.print(f"no results in {store.root}")
        return
    presets = sorted(set(summary["preset"]))
    title = f"optbench results, preset {', '.join(presets)} (mean ± std over ok seeds)"
    columns: dict[str, list[str]] = {"task": [], "configuration": [], "ok": [], "val loss": [], "val acc": [],
                                     "loss": [], "acc": [],
                                     "steps→tgt": [], "s→tgt": [], "step ms": [], f"×{ref}": []}
    headers = {}
    for c in metric_cols:  # two plugins may pick one short header: the later one shows its full name
        headers[c.name] = c.header if c.header not in columns else c.name
        columns[headers[c.name]] = []
    for _, r in summary.iterrows():
        ratio = r.get("step_time_ratio")
        values = [
            r["task"] + (" †" if r["synthetic"] else "") + ("" if len(presets) == 1 else f" ({r['preset']})"),
            escape(str(r["config"])), f"{r['ok']}/{r['seeds']}",
            fmt_mean_std(r["final_val_loss_mean"], r["final_val_loss_std"], 3),
            fmt_mean_std(r["final_val_accuracy_mean"], r["final_val_accuracy_std"], 3),
            fmt_mean_std(r["final_test_loss_mean"], r["final_test_loss_std"], 3),
            fmt_mean_std(r["final_test_accuracy_mean"], r["final_test_accuracy_std"], 3),
            _reached(r),
            fmt_mean_std(r["time_to_target_s_mean"], r["time_to_target_s_std"], 2),
            fmt_mean_std(r["step_time_ms_mean"], r["step_time_ms_std"], 3),
            "—" if ratio is None or math.isnan(ratio) else f"{ratio:.2f}",
            *(fmt_mean_std(r[f"{c.name}_mean"], r[f"{c.name}_std"], 3) for c in metric_cols),
        ]
        for col, value in zip(columns, values, strict=True):
            columns[col].append(value)
    table = Table(title=title, title_justify="left", caption_justify="left")
    shown = [c for c, vals in columns.items() if c in ("task", "configuration") or any(v != "—" for v in vals)]
    for col in shown:
        table.add_column(col, justify="left" if col in ("task", "configuration") else "right",
                         no_wrap=True, overflow="fold" if col == "configuration" else "ellipsis", min_width=len(col))
    for i in range(len(summary)):
        table.add_row(*(columns[c][i] for c in shown))
    table.caption = ("configuration: optimizer\\[changed hyperparameters], a bare name is its defaults · "
                     "val: validation · loss, acc: final test loss and accuracy · steps→tgt, s→tgt: training "
                     f"steps and seconds to the task's target · ×{ref}: step time ÷ {ref}'s in the same run · "
                     + "".join(f"{escape(headers[c.name])}: {escape(c.description or c.name)} · "
                               for c in metric_cols if headers[c.name] in shown)
                     + "† synthetic data")
    cli.console.print(table)
