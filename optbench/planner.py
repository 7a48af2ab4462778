"""Turns what the user asked for (a `RunRequest`: names or wildcard patterns, presets, seeds, --hp grids,
schedules, settings) into a `RunPlan`: the trials and the settings they run with.

Every check that can fail happens here, before anything runs, so commands only parse and print: settings
(plan_request.py: durations, counts, contradictions, the data directory), unknown names, patterns that match
nothing, unknown presets and suites, empty grids, hyperparameter values of the wrong type for the optimizer's
defaults or not finite, unknown metrics and a missing device. Each failure is one OptbenchError.
`--hp lr=1e-4,3e-4 --hp weight_decay=0,0.1` is a grid: every combination is one configuration.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optbench.errors import OptbenchError
from optbench.plan_request import RunRequest, TuneRequest, check_device, check_settings
from optbench.registry import Registry
from optbench.trial import Trial, canonical_json

if TYPE_CHECKING:
    from optbench.runner import RunSettings
    from optbench.tuning import StudyPlan


def parse_hp_value(raw: str) -> Any:
    """'1e-3' -> 0.001, 'true' -> True, '(0.9,0.99)' -> (0.9, 0.99); anything else stays a string."""
    low = raw.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        return raw.strip()


def split_values(raw: str) -> list[str]:
    """'1e-4,3e-4' -> ['1e-4', '3e-4']; commas inside brackets stay: '(0.9,0.99),(0.95,0.98)' gives two tuples."""
    parts, depth, cur = [], 0, ""
    for ch in raw:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def parse_hp_overrides(items: Iterable[str]) -> list[tuple[str | None, str, Any]]:
    """`--hp lr=1e-3` or `--hp lion-ib.lr=1e-3` -> (optimizer or None, key, value); `lr=1e-4,3e-4` gives one
    tuple per value (a grid axis), as does repeating `--hp` with the same key."""
    out = []
    for item in items:
        if "=" not in item:
            raise OptbenchError(f"--hp {item!r} is not KEY=VALUE.", "Write it like --hp lr=3e-4 or --hp lion.lr=3e-4.")
        key, raw = item.split("=", 1)
        opt: str | None = None
        if "." in key:
            opt, key = key.split(".", 1)
        values = split_values(raw)
        if not raw.strip() or any(not v for v in values):
            raise OptbenchError(f"--hp {item!r} gives an empty value, so its grid would be empty.",
                                "Give one or more comma-separated values, e.g. --hp lr=1e-4,3e-4,1e-3.")
        out.extend((opt, key.strip(), parse_hp_value(v)) for v in values)
    return out


def coerce_hp(optimizer: str, key: str, value: Any, default: Any) -> Any:
    """Type-check an override against the default's type; ints are accepted for floats."""
    kind = type(default)
    if default is None:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind in (tuple, list):
        if isinstance(value, (tuple, list)) and len(value) == len(default):
            return kind(value)
    elif isinstance(value, kind):
        return value
    raise OptbenchError(
        f"--hp {key}={value!r} for optimizer {optimizer!r} must be a {kind.__name__} like its default {default!r}.",
        "Fix the value and run again.",
    )


def _has_nonfinite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (tuple, list)):
        return any(_has_nonfinite(v) for v in value)
    return False


def check_finite(optimizer: str, key: str, value: Any, default: Any) -> None:
    """inf and nan are not hyperparameters (`--hp lr=1e999` parses as inf, which JSON cannot even store)
    unless the optimizer's own default for that key is non-finite, which says the spec allows them."""
    if _has_nonfinite(value) and not _has_nonfinite(default):
        raise OptbenchError(
            f"--hp {key}={value!r} for optimizer {optimizer!r} is not a finite number.",
            "Give a finite value (a number like 1e999 overflows to inf).",
        )


def resolve_grid(registry: Registry, optimizer: str, overrides: Sequence[tuple[str | None, str, Any]]) -> list[dict]:
    """Every configuration of `optimizer` the overrides ask for: the cartesian product of the values given per
    key (each checked against the default's type), on top of the defaults. No override: just the defaults.
    Values named for this optimizer (`lion.lr=`) replace bare ones (`lr=`) for the same key."""
    spec = registry.optimizer(optimizer).spec
    given: dict[str, dict[bool, list[Any]]] = {}
    for opt, key, value in overrides:
        if opt is not None and opt != optimizer:
            continue
        if key not in spec.defaults:
            if opt is None:
                continue  # a bare key applies to the optimizers that have it; checked in plan()
            known = ", ".join(sorted(spec.defaults)) or "none"
            raise OptbenchError(f"optimizer {optimizer!r} has no hyperparameter {key!r}.", f"It has: {known}.")
        value = coerce_hp(optimizer, key, value, spec.defaults[key])
        check_finite(optimizer, key, value, spec.defaults[key])
        values = given.setdefault(key, {True: [], False: []})[opt is not None]
        if value not in values:
            values.append(value)
    grid = [dict(spec.defaults)]
    for key, by_kind in given.items():
        values = by_kind[True] or by_kind[False]
        grid = [{**hp, key: v} for hp in grid for v in values]
    return grid


def expand_optimizers(registry: Registry, names: Sequence[str]) -> list[str]:
    """Names and wildcard patterns (`lion*`, as `optbench list` takes them) -> registered names, in the order
    given, each once. A pattern that matches nothing is an error, not an empty grid."""
    out: list[str] = []
    for name in names:
        if any(ch in name for ch in "*?["):
            matched = registry.names("optimizer", name)
            if not matched:
                raise OptbenchError(f"no optimizer matches {name!r}.", "See `optbench list optimizers` for the names.")
        else:
            registry.optimizer(name)
            matched = [name]
        out.extend(m for m in matched if m not in out)
    return out


def check_presets(registry: Registry, tasks: Sequence[str], preset: str) -> None:
    """Every task is registered and has `preset`."""
    for name in tasks:
        spec = registry.task(name).spec
        if preset not in spec.presets:
            raise OptbenchError(
                f"task {name!r} has no preset {preset!r}.", f"Its presets: {', '.join(spec.presets)}."
            )


def plan(
    registry: Registry,
    optimizers: Sequence[str],
    tasks: Sequence[str],
    preset: str,
    seeds: Sequence[int],
    hp_overrides: Sequence[str] = (),
    options: dict[str, Any] | None = None,
    task_options: dict[str, dict[str, Any]] | None = None,
    schedules: Sequence[str] = (),
) -> list[Trial]:
    """Validate everything, then expand the grid tasks x optimizers x configurations x seeds, where an
    optimizer's configurations are the cartesian product of its --hp values and the schedules. Optimizer names
    may be wildcard patterns. `options` go to every task; `task_options` add per-task ones (a suite's declared
    options)."""
    from optbench.schedules import parse_schedule

    if not optimizers:
        raise OptbenchError("no optimizer given.", "Name one with --optimizer, e.g. --optimizer lion-ib.")
    optimizers = expand_optimizers(registry, optimizers)
    if not tasks:
        raise OptbenchError("no task given.", "Name one with --task, e.g. --task cnn-digits.")
    if not seeds:
        raise OptbenchError("no seed given.", "Pass --seeds 1 or more.")
    check_presets(registry, tasks, preset)
    overrides = parse_hp_overrides(hp_overrides)
    for opt, key, _ in overrides:
        if opt is not None:
            registry.optimizer(opt)
            if opt not in optimizers:
                raise OptbenchError(f"--hp {opt}.{key} names optimizer {opt!r}, which is not being run.")
        elif not any(key in registry.optimizer(o).spec.defaults for o in optimizers):
            raise OptbenchError(f"no optimizer being run has a hyperparameter {key!r}.",
                                "See `optbench list optimizers --json` for each one's defaults.")
    scheds = list(dict.fromkeys(canonical_json(parse_schedule(s)) for s in schedules)) or ['{"name":"constant"}']
    sched_dicts = [json.loads(s) for s in scheds]
    grids = {o: resolve_grid(registry, o, overrides) for o in optimizers}

    def opts(task: str) -> dict[str, Any]:
        return dict(sorted({**(task_options or {}).get(task, {}), **(options or {})}.items()))

    return [
        Trial(task=t, preset=preset, optimizer=o, hparams=hp, seed=s, options=opts(t),
              schedule={} if sc == {"name": "constant"} else sc)
        for t in tasks
        for o in optimizers
        for hp in grids[o]
        for sc in sched_dicts
        for s in seeds
    ]


def describe(trials: Sequence[Trial]) -> str:
    """'12 trials = 1 task x 6 configurations x 2 seeds' (configurations counted over all optimizers)."""
    tasks = list(dict.fromkeys(t.task for t in trials))
    configs = list(dict.fromkeys((t.optimizer, t.config_id) for t in trials))
    seeds = list(dict.fromkeys(t.seed for t in trials))
    def n(k: int, word: str) -> str:
        return f"{k} {word}{'' if k == 1 else 's'}"
    return (f"{n(len(trials), 'trial')} = {n(len(tasks), 'task')} x {n(len(configs), 'configuration')} x "
            f"{n(len(seeds), 'seed')}")


@dataclass
class RunPlan:
    """A checked request: the trials, the settings every trial runs with, and what the planner decided that
    the person should be told (`notes`, e.g. a suite's declared options)."""

    request: RunRequest
    trials: list[Trial]
    settings: RunSettings
    notes: list[str] = field(default_factory=list)

    def runs_alone(self, trial: Trial) -> bool:
        """Whether `trial` must run with no other trial beside it (its optimizer or task matches --alone)."""
        return any(fnmatch.fnmatch(trial.optimizer, p) or fnmatch.fnmatch(trial.task, p) for p in self.request.alone)


def task_options(request: RunRequest) -> dict[str, Any]:
    """The options every task gets from the request's flags (--synthetic, --amp, --channels-last)."""
    options: dict[str, Any] = {"synthetic": True} if request.synthetic else {}
    if request.amp:
        options["amp"] = request.amp
    if request.channels_last:
        options["channels_last"] = True
    return options


def metric_names(registry: Registry, request: RunRequest) -> list[str] | None:
    """The metrics to compute: [] for --no-metrics, None for the default set, else the named ones (checked)."""
    if request.no_metrics:
        return []
    for name in request.metrics:
        registry.metric(name)
    return list(request.metrics) or None


def plan_run(registry: Registry, request: RunRequest) -> RunPlan:
    """Check the request whole and plan it; the first problem is one OptbenchError. A dry run is not checked
    against this machine (its device)."""
    from optbench.runner import RunSettings

    check_settings(request)
    task_names = list(request.tasks) or registry.suite(request.suite)
    suite_options: dict[str, dict] = {}
    notes: list[str] = []
    if not request.tasks and request.data_dir is None:  # a suite's declared options apply without --data-dir
        for name in task_names:
            declared = dict(registry.task(name).spec.suite_options.get(request.suite, {}))
            if declared:
                suite_options[name] = declared
                notes.append(f"{name}: suite {request.suite!r} runs it with {declared} "
                             "(pass --data-dir for real data)")
    trials = plan(registry, list(request.optimizers), task_names, request.preset, range(request.seeds),
                  request.hp, task_options(request), suite_options, request.schedules)
    metrics = metric_names(registry, request)
    if not request.dry_run:
        check_device(request)
    settings = RunSettings(device=request.device, data_dir=request.data_dir, metrics=metrics,
                           metrics_every=request.metrics_every, trial_timeout_s=request.trial_timeout,
                           run_id=uuid.uuid4().hex[:12])
    return RunPlan(request, trials, settings, notes)


@dataclass
class TunePlan:
    """A checked tune request: one study per task and optimizer, and the settings of its search trials (no
    metrics: selection needs only validation numbers) and of the fresh-seed re-runs."""

    request: TuneRequest
    studies: list[StudyPlan]
    search: RunSettings
    final: RunSettings


def plan_tuning(registry: Registry, request: TuneRequest) -> TunePlan:
    """Check a tune request whole (the settings it shares with `run` as `run` checks them) and plan its
    studies; every search space must be sampleable before anything runs."""
    from optbench.runner import RunSettings
    from optbench.schedules import parse_schedule
    from optbench.tuning import StudyPlan, parse_space

    run = request.run
    if request.budget < 1:
        raise OptbenchError(f"--budget must be at least 1 configuration, not {request.budget}.",
                            "Give every optimizer the same number of tries, e.g. --budget 16.")
    if run.seeds < 1:
        raise OptbenchError(f"--seeds must be at least 1, not {run.seeds}.", "The selected configuration is "
                            "re-run on this many fresh seeds for the reported numbers, e.g. --seeds 3.")
    check_settings(run)
    names = expand_optimizers(registry, list(run.optimizers))
    if not run.tasks:
        raise OptbenchError("no task given.", "Name one with --task, e.g. --task cnn-digits.")
    check_presets(registry, run.tasks, run.preset)
    schedule = parse_schedule(run.schedules[0] if run.schedules else "constant")
    schedule = {} if schedule == {"name": "constant"} else schedule
    for name in names:
        spec = registry.optimizer(name).spec
        parse_space(name, spec.search_space, spec.defaults)
    if not run.dry_run:
        check_device(run)
    options = task_options(run)
    studies = [StudyPlan(t, run.preset, o, request.budget, request.sampler, schedule, options, request.study)
               for t in run.tasks for o in names]
    run_id = uuid.uuid4().hex[:12]
    search = RunSettings(device=run.device, data_dir=run.data_dir, metrics=[], trial_timeout_s=run.trial_timeout,
                         run_id=run_id)
    final = RunSettings(device=run.device, data_dir=run.data_dir, metrics=metric_names(registry, run),
                        trial_timeout_s=run.trial_timeout, run_id=run_id)
    return TunePlan(request, studies, search, final)
