"""`optbench results`: mean ± std over seeds per task × optimizer configuration, as a table or JSON."""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import click

from optbench.cli.context import DEFAULT_RESULTS, RESULTS_ROOT, CliContext, cli_context


@click.command("results")
@click.option("--results", default=DEFAULT_RESULTS, show_default=True, type=RESULTS_ROOT)
@click.option("--task", "-t", "tasks", multiple=True, help="Only these tasks (repeatable; wildcards like 'mnist1d*').")
@click.option("--optimizer", "-o", "optimizers", multiple=True,
              help="Only these optimizers (repeatable; wildcards like 'lion*').")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON records.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the summary as CSV (every column).")
@click.option("--wide", is_flag=True, help="Show every column, however wide the terminal.")
def results_cmd(results: Path, tasks: tuple[str, ...], optimizers: tuple[str, ...], as_json: bool, as_csv: bool,
                wide: bool) -> None:
    """Summarise the results: mean ± std over seeds per task × optimizer configuration."""
    from optbench.errors import OptbenchError
    from optbench.store import Store

    if as_json and as_csv:
        raise OptbenchError("--json and --csv contradict each other.", "Pass one of them.")

    def select(df):
        if not tasks and not optimizers:
            return df
        return df[_matching(df["task"], tasks) & _matching(df["optimizer"], optimizers)]

    print_summary(cli_context(), Store(results), select, as_json=as_json, as_csv=as_csv, wide=wide)


#: what print_summary reads besides the summary's columns (summary.READS): the target's name, for the table
TABLE_READS = frozenset({"target_name"})


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return not patterns or any(fnmatch.fnmatch(name, p) for p in patterns)


def _matching(names, patterns: tuple[str, ...]):
    """Which of `names` (a Series) match: each distinct name is matched once, not once per trial."""
    names = names.astype(str)
    return names.isin([n for n in names.unique() if _matches(n, patterns)])


def _reached(r) -> str:
    """Steps to target over the seeds that reached it; the count only when some seeds did not."""
    from optbench.summary import fmt_mean_std

    if not r["reached"]:
        return "—"
    steps = fmt_mean_std(r["steps_to_target_mean"], r["steps_to_target_std"], 3)
    return steps if r["reached"] == r["ok"] else f"{steps} ({r['reached']}/{r['ok']})"


def _ratio(r, ref: str) -> str:
    """The interleaved step-time ratio with its interval (optbench/speed.py) where it was taken against `ref`,
    else the older same-run ratio."""
    med, lo, hi = (r.get(c) for c in ("opt_step_ratio", "opt_step_ratio_lo", "opt_step_ratio_hi"))
    if r.get("speed_ref") == ref and all(isinstance(v, float) and math.isfinite(v) for v in (med, lo, hi)):
        return f"{med:.2f} ({lo:.2f}–{hi:.2f})"
    ratio = r.get("step_time_ratio")
    return "—" if ratio is None or math.isnan(ratio) else f"{ratio:.2f}"


def print_summary(cli: CliContext, store, select, as_json: bool = False, as_csv: bool = False,
                  wide: bool = False) -> None:
    """Print the summary of the rows `select` keeps from STORE: a table that fits the terminal (the task, the
    configuration, its seeds, the task's target metric and the speed ratio first), or JSON / CSV records."""
    from rich.markup import escape

    from optbench.cli.fit import Column, fitted_table, natural_width, short_label
    from optbench.settings import speed_reference
    from optbench.store import Projection
    from optbench.summary import READS, fmt_mean_std, metric_columns, summarize

    res = store.read(columns=Projection.of(READS | TABLE_READS))
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
    if as_csv:
        click.echo(summary.to_csv(index=False), nl=False)
        return
    if summary.empty:
        cli.console.print("no results match the filters" if len(res.trials) else f"no results in {store.root}",
                          soft_wrap=True)
        return
    targets = (trials.dropna(subset=["target_name"]).groupby(["task", "preset"])["target_name"].first().to_dict()
               if "target_name" in trials else {})
    presets = sorted(set(summary["preset"]))
    cols = [Column("task", priority=0, wrap=True, justify="left"),
            Column("configuration", priority=1, wrap=True, justify="left"), Column("seeds", priority=2),
            Column("target metric", priority=3, justify="left"), Column(f"×{ref}", priority=4),
            Column("steps→tgt", priority=5), Column("s→tgt", priority=6), Column("val acc", priority=7),
            Column("val loss", priority=8), Column("test acc", priority=9), Column("test loss", priority=10),
            Column("step ms", priority=11)]
    headers = {c.name: c.header for c in metric_cols}
    taken = {c.header for c in cols}
    for i, c in enumerate(metric_cols):  # two plugins may pick one short header: the later one shows its full name
        headers[c.name] = c.header if c.header not in taken else c.name
        taken.add(headers[c.name])
        cols.append(Column(headers[c.name], priority=12 + i))
    for _, r in summary.iterrows():
        target = targets.get((r["task"], r["preset"]))
        mean, std = (r.get(f"final_{target}_mean"), r.get(f"final_{target}_std")) if target else (None, None)
        values = [
            escape(r["task"] + (" †" if r["synthetic"] else "") + ("" if len(presets) == 1 else f" ({r['preset']})")),
            escape(str(r["config"])), f"{r['ok']}/{r['seeds']}",
            f"{short_label(target)} {fmt_mean_std(mean, std, 3)}" if target and mean is not None else "—",
            _ratio(r, ref),
            _reached(r),
            fmt_mean_std(r["time_to_target_s_mean"], r["time_to_target_s_std"], 2),
            fmt_mean_std(r["final_val_accuracy_mean"], r["final_val_accuracy_std"], 3),
            fmt_mean_std(r["final_val_loss_mean"], r["final_val_loss_std"], 3),
            fmt_mean_std(r["final_test_accuracy_mean"], r["final_test_accuracy_std"], 3),
            fmt_mean_std(r["final_test_loss_mean"], r["final_test_loss_std"], 3),
            fmt_mean_std(r["step_time_ms_mean"], r["step_time_ms_std"], 3),
            *(fmt_mean_std(r[f"{c.name}_mean"], r[f"{c.name}_std"], 3) for c in metric_cols),
        ]
        for col, value in zip(cols, values, strict=True):
            col.values.append(value)
    cols = [c for c in cols if c.priority <= 2 or any(v != "—" for v in c.values)]  # drop columns with no data
    caption = ("configuration: optimizer\\[changed hyperparameters], a bare name is its defaults · target metric: "
               "the task's target metric, mean ± std over ok seeds · "
               f"×{ref}: optimizer step ÷ {ref}'s, interleaved in each trial: median (95% interval); rows without "
               f"it: step time ÷ {ref}'s in the same run · steps→tgt, s→tgt: training steps and seconds to the "
               "target · "
               + "".join(f"{escape(headers[c.name])}: {escape(c.description)} · " for c in metric_cols
                         if c.description and c.description != c.name)
               + "† synthetic data")
    title = f"optbench results, preset {', '.join(presets)} (mean ± std over ok seeds)"
    table = fitted_table(cols, None if wide else cli.console.width, title, caption, wide)
    cli.console.print(table, width=max(cli.console.width, natural_width(cols)) if wide else None, crop=not wide)
