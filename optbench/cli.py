"""The `optbench` command line. It parses, validates and prints; the engine modules do the work.

Errors a user can fix print one sentence and what to do (exit 2); Ctrl-C keeps finished trials and
exits 130.
"""

from __future__ import annotations

import json
import math
import sys
import uuid
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from optbench.errors import OptbenchError
from optbench.registry import Registry, get_registry

console = Console()
err_console = Console(stderr=True)

DEFAULT_RESULTS = "optbench-results"


def _registry() -> Registry:
    registry = get_registry()
    for problem in registry.problems:
        err_console.print(f"[yellow]warning:[/yellow] {problem}", markup=True, highlight=False)
    return registry


class OptbenchGroup(click.Group):
    """Turns OptbenchError into one clear line and Ctrl-C into exit code 130."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except OptbenchError as exc:
            err_console.print(f"[bold red]error:[/bold red] {exc.message}", highlight=False, soft_wrap=True)
            if exc.hint:
                err_console.print(f"  {exc.hint}", highlight=False, soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted:[/yellow] finished trials are saved; re-run the same "
                              "command to finish the rest.")
            sys.exit(130)


@click.group(cls=OptbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="optbench")
def main() -> None:
    """optbench: benchmark deep-learning optimizers on standard tasks."""


# --- list -----------------------------------------------------------------------------------------
KIND_OF = {"optimizers": "optimizer", "tasks": "task", "metrics": "metric"}


@main.command("list")
@click.argument("kind", type=click.Choice(sorted(KIND_OF)), default="optimizers")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def list_cmd(kind: str, pattern: str | None, as_json: bool) -> None:
    """List registered optimizers, tasks or metrics (PATTERN filters with wildcards, e.g. 'lion*')."""
    registry = _registry()
    k = KIND_OF[kind]
    entries = [registry.get(k, n) for n in registry.names(k, pattern)]
    if as_json:
        out = []
        for r in entries:
            item = {"name": r.name, "plugin": r.plugin, "distribution": r.distribution, "version": r.version,
                    "summary": r.spec.summary}
            if k == "optimizer":
                item.update(defaults=dict(r.spec.defaults), needs=str(r.spec.needs.value), paper=r.spec.paper)
            elif k == "task":
                item.update(presets=list(r.spec.presets), suites=list(r.spec.suites))
            else:
                item.update(when=str(r.spec.when.value), default=r.spec.default)
            out.append(item)
        click.echo(json.dumps(out, indent=2, default=str))
        return
    table = Table(title=f"{len(entries)} {kind}", title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("plugin", style="dim")
    if k == "task":
        table.add_column("presets")
        table.add_column("suites")
    table.add_column("summary")
    for r in entries:
        extra = [", ".join(r.spec.presets), ", ".join(r.spec.suites)] if k == "task" else []
        table.add_row(r.name, r.distribution, *extra, r.spec.summary, )
    console.print(table)


# --- run ------------------------------------------------------------------------------------------
@main.command("run")
@click.option("--optimizer", "-o", "optimizers", multiple=True, required=True, help="Optimizer name (repeatable).")
@click.option("--task", "-t", "tasks", multiple=True, help="Task name (repeatable); default: the suite.")
@click.option("--suite", default="default", show_default=True, help="Task suite used when no --task is given.")
@click.option("--preset", default="smoke", show_default=True, help="Task preset: smoke (CPU) or full (GPU).")
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(1), help="Seeds 0..N-1 per cell.")
@click.option("--hp", "hp", multiple=True, help="Hyperparameter KEY=VALUE or OPTIMIZER.KEY=VALUE (repeatable).")
@click.option("--results", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Re-run trials that already have results.")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="OPTBENCH_DATA",
              help="Where real datasets live (or $OPTBENCH_DATA). Nothing is ever downloaded.")
@click.option("--synthetic", is_flag=True, help="Use deterministic synthetic data for dataset tasks.")
@click.option("--amp", type=click.Choice(["bf16"]), default=None, help="bfloat16 autocast in tasks that support it.")
@click.option("--channels-last", is_flag=True, help="channels-last memory format in tasks that support it.")
@click.option("--metrics", "metrics", multiple=True, help="Metric names (repeatable); default: the default set.")
@click.option("--no-metrics", is_flag=True, help="Compute no metric plugins at all.")
@click.option("--metrics-every", default=0, show_default=True, type=click.IntRange(0),
              help="Also compute metrics every K evaluations (0: only at the end of each trial).")
@click.option("--trial-timeout", type=float, default=None, help="Stop a trial after this many seconds.")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="Run trials in this process, or as Ray tasks (pip install 'optbench[ray]').")
@click.option("--address", default=None, help="Ray cluster address (e.g. auto); default: start a local Ray.")
@click.option("--gpus-per-trial", default=0.0, show_default=True, type=click.FloatRange(0),
              help="GPUs a Ray task asks for when its preset wants a GPU.")
@click.option("--cpus-per-trial", default=1.0, show_default=True, type=click.FloatRange(0),
              help="CPUs each Ray task asks for.")
def run_cmd(optimizers, tasks, suite, preset, seeds, hp, results, force, device, data_dir, synthetic, amp,
            channels_last, metrics, no_metrics, metrics_every, trial_timeout, executor, address, gpus_per_trial,
            cpus_per_trial) -> None:
    """Run optimizers on tasks and write one Parquet row per trial under --results."""
    from optbench.executor import run_local
    from optbench.planner import plan
    from optbench.runner import RunSettings
    from optbench.store import Store

    registry = _registry()
    if data_dir is not None and not data_dir.is_dir():
        raise OptbenchError(f"the data directory {data_dir} does not exist.",
                            "Pass --data-dir (or $OPTBENCH_DATA) pointing at your datasets, or use --synthetic.")
    task_names = list(tasks) or registry.suite(suite)
    options = {"synthetic": True} if synthetic else {}
    if amp:
        options["amp"] = amp
    if channels_last:
        options["channels_last"] = True
    suite_options: dict[str, dict] = {}
    if not tasks and data_dir is None:  # a suite's declared options (e.g. synthetic data) apply without --data-dir
        for name in task_names:
            declared = dict(registry.task(name).spec.suite_options.get(suite, {}))
            if declared:
                suite_options[name] = declared
                err_console.print(f"[dim]{name}: suite {suite!r} runs it with {declared} "
                                  "(pass --data-dir for real data)[/dim]")
    trials = plan(registry, list(optimizers), task_names, preset, range(seeds), hp, options, suite_options)
    if no_metrics and metrics:
        raise OptbenchError("--no-metrics and --metrics contradict each other.", "Pass one of them.")
    if no_metrics:
        metric_names: list[str] | None = []
    else:
        metric_names = list(metrics) or None
        for m in metric_names or []:
            registry.metric(m)
    settings = RunSettings(device=device, data_dir=data_dir, metrics=metric_names, metrics_every=metrics_every,
                           trial_timeout_s=trial_timeout, run_id=uuid.uuid4().hex[:12])
    if device == "cuda" and executor == "local":  # on Ray the workers, not this driver, need the GPU
        import torch

        if not torch.cuda.is_available():
            raise OptbenchError("--device cuda was asked for, but torch sees no CUDA device.",
                                "Use --device cpu or --device auto.")
    store = Store(results)
    if executor == "ray":
        from optbench.executor_ray import run_ray

        outcome = run_ray(trials, store, registry, settings, force=force, console=err_console, address=address,
                          gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial)
    else:
        outcome = run_local(trials, store, registry, settings, force=force, console=err_console)
    if outcome.busy:
        err_console.print(f"[yellow]{len(outcome.busy)} trial(s) are being run by another optbench process on "
                          f"{results}[/yellow]; re-run later to pick up any it leaves unfinished.")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.statuses.items())) or "nothing new"
    err_console.print(f"ran {len(outcome.ran)} trial(s) ({counts}); {len(outcome.skipped)} already done; "
                      f"results in {results}")
    ids = {t.trial_id for t in trials}
    _print_summary(store, lambda df: df[df["trial_id"].isin(ids)])


# --- results --------------------------------------------------------------------------------------
@main.command("results")
@click.option("--results", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON records.")
def results_cmd(results: Path, as_json: bool) -> None:
    """Summarise the results: mean ± std over seeds per task × optimizer."""
    from optbench.store import Store

    _print_summary(Store(results), lambda df: df, as_json=as_json)


def _reached(r) -> str:
    """Steps to target over the seeds that reached it; the count only when some seeds did not."""
    from optbench.summary import fmt_mean_std

    if not r["reached"]:
        return "—"
    steps = fmt_mean_std(r["steps_to_target_mean"], r["steps_to_target_std"], 3)
    return steps if r["reached"] == r["ok"] else f"{steps} ({r['reached']}/{r['ok']})"


def _print_summary(store, select, as_json: bool = False) -> None:
    from optbench.summary import fmt_mean_std, summarize

    res = store.read()
    for problem in res.problems:
        err_console.print(f"[yellow]skipped[/yellow] {problem}", highlight=False, soft_wrap=True)
    summary = summarize(select(res.trials))
    if as_json:
        # double_precision=15: pandas rounds to 10 decimals by default, which zeroes small losses
        click.echo(summary.to_json(orient="records", indent=2, double_precision=15))
        return
    if summary.empty:
        console.print(f"no results in {store.root}")
        return
    presets = sorted(set(summary["preset"]))
    title = f"optbench results, preset {', '.join(presets)} (mean ± std over ok seeds)"
    columns: dict[str, list[str]] = {"task": [], "optimizer": [], "ok": [], "loss": [], "acc": [],
                                     "steps→tgt": [], "s→tgt": [], "step ms": [], "×adamw": [],
                                     "λmax": [], "H gap": []}
    for _, r in summary.iterrows():
        ratio = r.get("step_time_ratio")
        values = [
            r["task"] + (" †" if r["synthetic"] else "") + ("" if len(presets) == 1 else f" ({r['preset']})"),
            r["optimizer"], f"{r['ok']}/{r['seeds']}",
            fmt_mean_std(r["final_test_loss_mean"], r["final_test_loss_std"], 3),
            fmt_mean_std(r["final_test_accuracy_mean"], r["final_test_accuracy_std"], 3),
            _reached(r),
            fmt_mean_std(r["time_to_target_s_mean"], r["time_to_target_s_std"], 2),
            fmt_mean_std(r["step_time_ms_mean"], r["step_time_ms_std"], 3),
            "—" if ratio is None or math.isnan(ratio) else f"{ratio:.2f}",
            fmt_mean_std(r["sharpness_mean"], r["sharpness_std"], 3),
            fmt_mean_std(r["entropy_gap_mean"], r["entropy_gap_std"], 3),
        ]
        for col, value in zip(columns, values, strict=True):
            columns[col].append(value)
    table = Table(title=title, title_justify="left", caption_justify="left")
    shown = [c for c, vals in columns.items() if c in ("task", "optimizer") or any(v != "—" for v in vals)]
    for col in shown:
        table.add_column(col, justify="left" if col in ("task", "optimizer") else "right", no_wrap=True,
                         min_width=len(col))
    for i in range(len(summary)):
        table.add_row(*(columns[c][i] for c in shown))
    table.caption = ("loss, acc: final test loss and accuracy · steps→tgt, s→tgt: training steps and seconds to "
                     "the task's target · ×adamw: step time ÷ adamw's in the same run · λmax: sharpness (top Hessian "
                     "eigenvalue) · H gap: entropy gap of the Hessian spectrum · † synthetic data")
    console.print(table)


from optbench.cli_gate import gate_cmd  # noqa: E402 - subcommands register after `main` exists

main.add_command(gate_cmd)

from optbench.cli_plugin import check_plugin_cmd, new_plugin_cmd  # noqa: E402

main.add_command(new_plugin_cmd)
main.add_command(check_plugin_cmd)

from optbench.leaderboard.cli import leaderboard  # noqa: E402

main.add_command(leaderboard)

if __name__ == "__main__":
    main()
