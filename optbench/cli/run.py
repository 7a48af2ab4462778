"""`optbench run`: parse the flags into one `RunRequest`, let the planner check it and plan the grid
(planner.plan_run), run the plan on the chosen executor, print the summary. Nothing is validated here."""

from __future__ import annotations

from pathlib import Path

import click

from optbench.cli.context import DEFAULT_RESULTS, RESULTS_ROOT, cli_context
from optbench.cli.results import print_summary


def print_plan(cli, trials) -> None:
    """The trials a command would run (count, tasks x configurations x seeds, one line per configuration)."""
    from rich.markup import escape
    from rich.table import Table

    from optbench.config import config_label
    from optbench.planner import describe

    registry = cli.registry
    cli.console.print(f"dry run: {describe(trials)}; nothing is run or written", highlight=False)
    table = Table(title_justify="left")
    for col in ("task", "preset", "configuration", "seeds"):
        table.add_column(col, overflow="fold")
    cells: dict[tuple, list[int]] = {}
    for t in trials:
        label = config_label(t.optimizer, t.hparams, t.schedule, registry.optimizer(t.optimizer).spec.defaults)
        cells.setdefault((t.task, t.preset, label), []).append(t.seed)
    for (task, preset, label), seeds in cells.items():
        table.add_row(escape(task), escape(preset), escape(label), ",".join(map(str, seeds)))
    cli.console.print(table)


@click.command("run")
@click.option("--optimizer", "-o", "optimizers", multiple=True, required=True,
              help="Optimizer name or wildcard pattern, e.g. 'lion*' (repeatable).")
@click.option("--task", "-t", "tasks", multiple=True, help="Task name (repeatable); default: the suite.")
@click.option("--suite", default="standard", show_default=True,
              help="Task suite used when no --task is given: standard (real data), diagnostics, gate.")
@click.option("--preset", default="smoke", show_default=True, help="Task preset: smoke (CPU) or full (GPU).")
@click.option("--seeds", default=1, show_default=True, type=int, help="Seeds 0..N-1 per cell.")
@click.option("--hp", "hp", multiple=True,
              help="Hyperparameter KEY=VALUE or OPTIMIZER.KEY=VALUE; comma-separated values and repeated keys make a "
                   "grid (every combination is one configuration), e.g. --hp lion.lr=1e-4,3e-4,1e-3.")
@click.option("--schedule", "schedules", multiple=True, metavar="NAME[:key=value,...]",
              help="Learning-rate schedule, the same for every optimizer: constant (default), warmup-cosine, "
                   "warmup-linear, e.g. warmup-cosine:warmup=0.05,final=0 (repeatable: a grid axis).")
@click.option("--dry-run", is_flag=True, help="Print the planned trials and run nothing.")
@click.option("--results", default=DEFAULT_RESULTS, show_default=True, type=RESULTS_ROOT)
@click.option("--force", is_flag=True, help="Re-run trials that already have results.")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="OPTBENCH_DATA",
              help="Where real datasets live (or $OPTBENCH_DATA). Nothing is ever downloaded.")
@click.option("--synthetic", is_flag=True, help="Use deterministic synthetic data for dataset tasks.")
@click.option("--amp", type=click.Choice(["bf16"]), default=None, help="bfloat16 autocast in tasks that support it.")
@click.option("--channels-last", is_flag=True, help="channels-last memory format in tasks that support it.")
@click.option("--metrics", "metrics", multiple=True, help="Metric names (repeatable); default: the default set.")
@click.option("--no-metrics", is_flag=True, help="Compute no metric plugins at all.")
@click.option("--metrics-every", default=0, show_default=True, type=int,
              help="Also compute metrics every K evaluations (0: only at the end of each trial).")
@click.option("--trial-timeout", type=float, default=None,
              help="Stop a trial after this many seconds (a positive number; default: no limit).")
@click.option("--workers", default=1, show_default=True, type=int,
              help="Local executor: trials run at once, each in its own worker process.")
@click.option("--torch-threads", type=int, default=None,
              help="Torch threads per worker (recorded in each row); default: CPU cores // --workers, "
                   "at most $OMP_NUM_THREADS.")
@click.option("--alone", "alone", multiple=True, metavar="PATTERN",
              help="Run trials whose optimizer or task matches PATTERN (wildcards) with no other trial beside "
                   "them, e.g. for step timings (repeatable).")
@click.option("--claim-ttl", type=float, default=None,
              help="Seconds a claim outlives a silent driver before another host may take its trial; "
                   "default: --trial-timeout plus 120 s, else 900 s.")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="Run trials in worker processes here, or as Ray tasks (pip install 'optbench[ray]').")
@click.option("--address", default=None, help="Ray cluster address (e.g. auto); default: start a local Ray.")
@click.option("--gpus-per-trial", default=0.0, show_default=True, type=float,
              help="GPUs a Ray task asks for when its preset wants a GPU.")
@click.option("--cpus-per-trial", default=1.0, show_default=True, type=float,
              help="CPUs each Ray task asks for.")
@click.option("--ray-timeout", default=30.0, show_default=True, type=float,
              help="Seconds to reach the Ray cluster before giving up.")
def run_cmd(results, force, **flags) -> None:
    """Run optimizers on tasks and write one Parquet row per trial under --results."""
    from rich.markup import escape

    from optbench.executor import LocalOptions, run_local
    from optbench.plan_request import RunRequest
    from optbench.planner import plan_run
    from optbench.store import Store

    cli = cli_context()
    err_console = cli.err_console
    request = RunRequest(**flags)  # every flag but --results and --force is a field of the request
    run = plan_run(cli.registry, request)
    for note in run.notes:
        err_console.print(f"[dim]{escape(note)}[/dim]")
    trials, settings = run.trials, run.settings
    if request.dry_run:
        print_plan(cli, trials)
        return
    store = Store(results)
    if request.executor == "ray":
        from optbench.executor_ray import run_ray

        outcome = run_ray(trials, store, cli.registry, settings, force=force, console=err_console,
                          address=request.address, gpus_per_trial=request.gpus_per_trial,
                          cpus_per_trial=request.cpus_per_trial, connect_timeout_s=request.ray_timeout,
                          claim_ttl_s=request.claim_ttl)
    else:
        local = LocalOptions(workers=request.workers, threads=request.torch_threads,
                             alone=run.runs_alone if request.alone else None, claim_ttl_s=request.claim_ttl)
        outcome = run_local(trials, store, cli.registry, settings, force=force, console=err_console, options=local)
    if outcome.busy:
        err_console.print(f"[yellow]{len(outcome.busy)} trial(s) are being run by another optbench process on "
                          f"{results}[/yellow]; re-run later to pick up any it leaves unfinished.")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.statuses.items())) or "nothing new"
    err_console.print(f"ran {len(outcome.ran)} trial(s) ({counts}); {len(outcome.skipped)} already done; "
                      f"results in {results}")
    ids = {t.trial_id for t in trials}
    print_summary(cli, store, lambda df: df[df["trial_id"].isin(ids)])
    for problem in dict.fromkeys(outcome.observer_problems):  # after the table, where they are seen
        cli.warn(f"{problem} (the trial's results were saved)")
