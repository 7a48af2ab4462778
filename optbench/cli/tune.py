"""`optbench tune`: the same budget of configurations for every optimizer, selected on validation, reported on
fresh seeds (optbench/tuning.py has the protocol). This module parses the flags into a `TuneRequest`, which the
planner checks and plans (planner.plan_tuning, with the checks `optbench run` uses), and prints."""

from __future__ import annotations

from pathlib import Path

import click

from optbench.cli.context import DEFAULT_RESULTS, cli_context


@click.command("tune")
@click.option("--optimizer", "-o", "optimizers", multiple=True, required=True,
              help="Optimizer name or wildcard pattern (repeatable).")
@click.option("--task", "-t", "tasks", multiple=True, required=True, help="Task name (repeatable).")
@click.option("--budget", required=True, type=int, help="Configurations tried per optimizer and task (the same "
              "for every optimizer).")
@click.option("--sampler", default="tpe", show_default=True, type=click.Choice(["tpe", "random", "grid"]),
              help="How configurations are drawn from each optimizer's search space.")
@click.option("--seeds", default=3, show_default=True, type=int,
              help="Fresh seeds the selected configuration is re-run on for the reported numbers.")
@click.option("--preset", default="smoke", show_default=True, help="Task preset.")
@click.option("--schedule", "schedule", default="constant", show_default=True, metavar="NAME[:key=value,...]",
              help="Learning-rate schedule for every trial (constant, warmup-cosine, warmup-linear).")
@click.option("--study", "prefix", default="tune", show_default=True,
              help="Study name prefix; a new prefix starts new studies instead of resuming.")
@click.option("--sampler-seed", default=0, show_default=True, type=int, help="Seed of the sampler.")
@click.option("--results", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="OPTBENCH_DATA",
              help="Where real datasets live (or $OPTBENCH_DATA). Nothing is ever downloaded.")
@click.option("--synthetic", is_flag=True, help="Use deterministic synthetic data for dataset tasks.")
@click.option("--workers", default=1, show_default=True, type=int,
              help="Trials run at once (each in its own worker process); also configurations asked at once.")
@click.option("--trial-timeout", type=float, default=None,
              help="Stop a trial after this many seconds (it becomes a failed trial of the study).")
@click.option("--no-metrics", is_flag=True, help="No metric plugins on the fresh-seed re-runs either "
              "(search trials never compute them: selection needs only validation numbers).")
@click.option("--dry-run", is_flag=True, help="Print the studies and trial counts; run nothing.")
def tune_cmd(optimizers, tasks, budget, sampler, seeds, preset, schedule, prefix, sampler_seed, results, device,
             data_dir, synthetic, workers, trial_timeout, no_metrics, dry_run) -> None:
    """Tune each optimizer on each task with the same budget, select on validation, report on fresh seeds."""
    from optbench.plan_request import RunRequest, TuneRequest
    from optbench.planner import plan_tuning
    from optbench.tuning import FINAL_SEED_BASE, check_resumable, existing_study, probe_objective, space_text

    cli = cli_context()
    registry = cli.registry
    run = RunRequest(optimizers=tuple(optimizers), tasks=tuple(tasks), preset=preset, seeds=seeds,
                     schedules=(schedule,), device=device, data_dir=data_dir, synthetic=synthetic, workers=workers,
                     trial_timeout=trial_timeout, no_metrics=no_metrics, dry_run=dry_run)
    tune = plan_tuning(registry, TuneRequest(run, budget, sampler, prefix, sampler_seed))
    plans = tune.studies
    if dry_run:
        _print_plans(cli, plans, seeds)
        return
    options = plans[0].options
    objectives = {t: probe_objective(registry, t, preset, options, data_dir) for t in tasks}
    root = Path(results)
    for plan in plans:  # a study whose space changed stops everything before anything is written
        study = existing_study(root, plan.name)
        if study is not None:
            opt = registry.optimizer(plan.optimizer).spec
            check_resumable(study, plan, space_text(opt.search_space), objectives[plan.task])
    outcomes = _run(cli, tune, objectives, root)
    _print_outcomes(cli, outcomes, root, seeds, FINAL_SEED_BASE)


def _run(cli, tune, objectives, root: Path):
    from optbench.executor import LocalOptions, run_local
    from optbench.store import Store
    from optbench.tuning import Tuner

    registry = cli.registry
    store = Store(root)
    store.prepare()
    workers = tune.request.run.workers

    def execute(trials) -> None:
        if not trials:
            return
        settings = tune.final if trials[0].study_role == "final" else tune.search
        run_local(trials, store, registry, settings, console=cli.err_console,
                  options=LocalOptions(workers=min(workers, len(trials))))

    tuner = Tuner(store, registry, execute, root, on_event=lambda m: cli.err_console.print(f"[dim]{m}[/dim]"))
    outcomes = []
    plans = tune.studies
    for i, plan in enumerate(plans, start=1):
        cli.err_console.print(f"[bold]study {i}/{len(plans)}[/bold] {plan.name}: {plan.budget} configuration(s), "
                              f"selected on {objectives[plan.task].column}", highlight=False)
        outcomes.append(tuner.run(plan, objectives[plan.task], tune.request.run.seeds, tune.request.sampler_seed,
                                  batch=workers))
    return outcomes


def _print_plans(cli, plans, seeds: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    from optbench.tuning import describe_space

    total = sum(p.budget + seeds for p in plans)
    cli.console.print(f"dry run: {len(plans)} stud{'y' if len(plans) == 1 else 'ies'}, {total} trials "
                      f"(per study: {plans[0].budget} search + {seeds} fresh-seed re-runs); nothing is run or written",
                      highlight=False)
    table = Table()
    for col in ("study", "budget", "search space"):
        table.add_column(col, overflow="fold")
    for p in plans:
        spec = cli.registry.optimizer(p.optimizer).spec
        table.add_row(escape(p.name), str(p.budget), escape(describe_space(spec.search_space)))
    cli.console.print(table)


def _print_outcomes(cli, outcomes, root: Path, seeds: int, base: int) -> None:
    import math

    from rich.markup import escape
    from rich.table import Table

    from optbench.store import Store
    from optbench.summary import fmt_mean_std, summarize

    trials = Store(root).read().trials
    table = Table(title=f"optbench tune: selected on validation, reported on {seeds} fresh seed(s) "
                        f"({base}..{base + seeds - 1})", title_justify="left", caption_justify="left")
    longest = max((len(r.selected["config"]) for r in outcomes if r.selected), default=20)
    one_task = len({r.plan.task for r in outcomes}) == 1
    if one_task:
        table.title += f" · task {outcomes[0].plan.task}"
    for col in ("task", "selected configuration", "val", "failed", "ok", "test acc", "test loss"):
        if col == "task" and one_task:
            continue
        table.add_column(col, overflow="fold", no_wrap=col != "selected configuration",
                         min_width=min(longest, 56) if col == "selected configuration" else None,
                         justify="left" if col in ("task", "selected configuration") else "right")
    for res in outcomes:
        plan, sel = res.plan, res.selected
        if sel is None:
            table.add_row(*([] if one_task else [escape(plan.task)]),
                          escape(f"{plan.optimizer}: none, every configuration failed"), "—",
                          f"{res.failed}/{len(res.search)}", "—", "—", "—")
            continue
        cells = summarize(trials[trials["trial_id"].isin(res.final_ids)])
        c = cells.iloc[0] if not cells.empty else None
        val = sel["value"]
        table.add_row(*([] if one_task else [escape(plan.task)]), escape(sel["config"]),
                      "—" if val is None or not math.isfinite(val) else f"{val:.4g}",
                      f"{res.failed}/{len(res.search)}",
                      f"{int(c['ok'])}/{int(c['seeds'])}" if c is not None else "—",
                      fmt_mean_std(c["final_test_accuracy_mean"], c["final_test_accuracy_std"], 3) if c is not None
                      else "—",
                      fmt_mean_std(c["final_test_loss_mean"], c["final_test_loss_std"], 3) if c is not None else "—")
    table.caption = ("val: the selected configuration's validation metric (accuracy where the task has one, else "
                     "loss) on the search seed · failed: configurations that failed or diverged / tried · ok: fresh "
                     "seeds ok · test acc, test loss: mean ± std over the fresh seeds")
    cli.console.print(table)
    cli.err_console.print(f"studies in {root / 'studies'}; every trial in {root} (`optbench results --results "
                          f"{root}` shows the re-runs; search trials feed the leaderboard's sensitivity plots)",
                          highlight=False)
