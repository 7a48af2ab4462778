"""The tuning protocol behind `optbench tune`: a fixed budget of configurations per optimizer, drawn from the
optimizer's declared search space, selected on VALIDATION metrics, reported on TEST metrics of fresh seeds.

Why this shape (AlgoPerf's external-tuning rules, in our words): an optimizer is only as good as the
configuration a user can find for it, so every optimizer gets the same number of tries from the space its
authors declare; choosing on the test split would report the luck of the choice, so the choice sees only
validation numbers; and the chosen configuration is re-run on seeds the search never used, so the reported
spread is the seeds', not the selection's.

One Optuna study per (task, preset, optimizer, sampler, schedule). Its storage is a journal file in the results
directory, so a killed driver resumes where it stopped (a trial whose driver died is run again) and several
drivers may share a study. Each study trial is one optbench trial (seed SEARCH_SEED, `study_role="search"`);
a trial that fails, diverges or crashes is a failed study trial and the study goes on. Rows record the study,
its budget and search space, each configuration's rank and whether it was selected.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from optbench import storefs
from optbench.config import canonical_json, config_label, schedule_label
from optbench.errors import OptbenchError
from optbench.registry import Registry
from optbench.store import Store
from optbench.trial import Trial

#: the seed every search trial trains with (one seed per configuration, as in AlgoPerf's external tuning)
SEARCH_SEED = 0
#: the reported re-runs use seeds FINAL_SEED_BASE, FINAL_SEED_BASE + 1, ...: never the search seed
FINAL_SEED_BASE = 1000
#: the journal holding every study of a results root
JOURNAL = "studies/optuna.journal"
SAMPLERS = ("tpe", "random", "grid")
_SPACE_KINDS = ("log-uniform", "uniform", "int", "int-log", "choice")


# --- search spaces ---------------------------------------------------------------------------------
def parse_space(optimizer: str, space: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """An OptimizerSpec.search_space -> Optuna distributions, or one clear sentence saying why it cannot be
    sampled. Entries: ("log-uniform", lo, hi), ("uniform", lo, hi), ("int", lo, hi), ("int-log", lo, hi),
    ("choice", [values...]); every key must be one of the optimizer's hyperparameters."""
    import optuna.distributions as d

    if not space:
        raise OptbenchError(f"optimizer {optimizer!r} declares no search space, so it cannot be tuned.",
                            "Declare search_space= in its OptimizerSpec, e.g. {'lr': ('log-uniform', 1e-5, 1e-1)}.")
    out: dict[str, Any] = {}
    for key, entry in space.items():
        where = f"search space of {optimizer!r}: {key}={entry!r}"
        if key not in defaults:
            raise OptbenchError(f"{where} is not one of its hyperparameters.", f"It has: {', '.join(defaults)}.")
        if not isinstance(entry, (tuple, list)) or not entry or entry[0] not in _SPACE_KINDS:
            raise OptbenchError(f"{where} cannot be sampled.", f"Use one of: {', '.join(_SPACE_KINDS)}.")
        kind = entry[0]
        if kind == "choice":
            values = list(entry[1]) if len(entry) == 2 and isinstance(entry[1], (list, tuple)) else []
            if not values:
                raise OptbenchError(f"{where} has no values to choose from.")
            out[key] = d.CategoricalDistribution(values)
            continue
        if len(entry) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry[1:]):
            raise OptbenchError(f"{where} needs a low and a high bound.", f"Write it as ({kind!r}, low, high).")
        lo, hi = float(entry[1]), float(entry[2])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise OptbenchError(f"{where} is empty or unbounded (low must be below high, both finite).")
        if kind in ("log-uniform", "int-log") and lo <= 0:
            raise OptbenchError(f"{where} is log-scaled, so its low bound must be above 0.")
        if kind.startswith("int"):
            if int(lo) != lo or int(hi) != hi:
                raise OptbenchError(f"{where} needs whole-number bounds.")
            out[key] = d.IntDistribution(int(lo), int(hi), log=kind == "int-log")
        else:
            out[key] = d.FloatDistribution(lo, hi, log=kind == "log-uniform")
    return out


def space_text(space: Mapping[str, Any]) -> str:
    """The declared space as canonical JSON: what rows record and what a resumed study must match."""
    return canonical_json({k: list(v) if isinstance(v, tuple) else v for k, v in space.items()})


def hparams_for(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer's defaults with the sampled values in, each of the default's type (an int default stays
    an int; a float default gets a float even from an int range)."""
    hp = dict(defaults)
    for key, value in params.items():
        default = defaults.get(key)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        hp[key] = value
    return hp


def grid_points(distributions: Mapping[str, Any], budget: int) -> dict[str, list[Any]]:
    """For --sampler grid: ceil(budget ** (1/d)) evenly spaced values per dimension (log-spaced on log
    scales), so the grid has at least `budget` points; the study evaluates `budget` of them."""
    import optuna.distributions as d

    k = max(1, math.ceil(budget ** (1.0 / max(1, len(distributions))) - 1e-9))
    out: dict[str, list[Any]] = {}
    for key, dist in distributions.items():
        if isinstance(dist, d.CategoricalDistribution):
            out[key] = list(dist.choices)
            continue
        lo, hi = float(dist.low), float(dist.high)
        if k == 1:
            vals = [math.sqrt(lo * hi) if dist.log else (lo + hi) / 2]
        elif dist.log:
            vals = [math.exp(math.log(lo) + i * (math.log(hi) - math.log(lo)) / (k - 1)) for i in range(k)]
        else:
            vals = [lo + i * (hi - lo) / (k - 1) for i in range(k)]
        if isinstance(dist, d.IntDistribution):
            vals = sorted({int(round(v)) for v in vals})
        out[key] = [float(f"{v:.6g}") if isinstance(v, float) else v for v in vals]
    return out


# --- objective -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Objective:
    column: str  # the row column selection reads: final_val_accuracy or final_val_loss
    direction: str  # "maximize" or "minimize"


def objective_from(metrics: Mapping[str, float], task: str) -> Objective:
    """Validation accuracy where the task reports it, else validation loss. A task with no validation split
    cannot be tuned: selecting on its test metrics is exactly what the protocol forbids."""
    if "val_accuracy" in metrics:
        return Objective("final_val_accuracy", "maximize")
    if "val_loss" in metrics:
        return Objective("final_val_loss", "minimize")
    raise OptbenchError(
        f"task {task!r} reports no validation metric (val_loss or val_accuracy), so it cannot be tuned: "
        "configurations are selected on validation and never on test.",
        "Give the task a validation split (TaskInstance.evaluate() returning val_loss), or tune another task.",
    )


def probe_objective(registry: Registry, task: str, preset: str, options: Mapping[str, Any],
                    data_dir: Path | None) -> Objective:
    """Build the task once (untrained) and look at what its evaluate() reports."""
    import torch

    spec = registry.task(task).spec
    instance = spec.build(preset, SEARCH_SEED, torch.device("cpu"), data_dir, **options)
    instance.eval()
    with torch.no_grad():
        metrics = instance.evaluate()
    return objective_from(metrics, task)


# --- one study -------------------------------------------------------------------------------------
@dataclass
class StudyPlan:
    task: str
    preset: str
    optimizer: str
    budget: int
    sampler: str = "tpe"
    schedule: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    prefix: str = "tune"

    @property
    def name(self) -> str:
        sched = schedule_label(self.schedule)
        opts = canonical_json(self.options) if self.options else ""
        return ":".join(p for p in (self.prefix, self.task, self.preset, self.optimizer, self.sampler, sched, opts)
                        if p)


@dataclass
class StudyResult:
    plan: StudyPlan
    objective: Objective
    search: list[dict[str, Any]]  # one per distinct configuration: config, hparams, value, state, trial_id
    selected: dict[str, Any] | None
    final_ids: list[str]

    @property
    def failed(self) -> int:
        return sum(1 for s in self.search if s["value"] is None)


Execute = Callable[[Sequence[Trial]], None]


def journal_storage(root: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = root / JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def existing_study(root: Path, name: str) -> Any | None:
    """The study if the results root already holds it (nothing is written when it does not)."""
    if not (root / JOURNAL).exists():
        return None
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=journal_storage(root))
    except KeyError:
        return None


def check_resumable(study: Any, plan: StudyPlan, space: str, objective: Objective) -> None:
    attrs = study.user_attrs
    if attrs.get("search_space") != space:
        raise OptbenchError(
            f"study {plan.name!r} was started with the search space {attrs.get('search_space')} and "
            f"{plan.optimizer!r} now declares {space}; resuming would mix configurations from two spaces.",
            "Start a new study with --study NAME (or another --results directory).",
        )
    if attrs.get("objective") != objective.column:
        raise OptbenchError(f"study {plan.name!r} selects on {attrs.get('objective')}, but the task now reports "
                            f"{objective.column}.", "Start a new study with --study NAME.")


def _sampler(kind: str, distributions: Mapping[str, Any], budget: int, seed: int) -> Any:
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        return optuna.samplers.GridSampler(grid_points(distributions, budget), seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, budget // 2)))


def _driver() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _driver_alive(info: Any) -> bool:
    """A RUNNING study trial belongs to a live driver unless its driver is a dead process on this host."""
    if not isinstance(info, dict) or info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, KeyError):
        return True
    return int(info["pid"]) != os.getpid()  # this very process asking again: its earlier attempt was abandoned


def read_row(store: Store, trial_id: str) -> dict[str, Any] | None:
    path = store.trial_path(trial_id)
    try:
        return pq.read_table(str(path), filesystem=store.loc.fs).to_pylist()[0]
    except (OSError, IndexError, pa.ArrowInvalid):
        res = store.read()
        rows = res.trials[res.trials["trial_id"] == trial_id]
        return None if rows.empty else rows.iloc[0].to_dict()


def value_of(row: Mapping[str, Any] | None, objective: Objective) -> float | None:
    """The study's value for a finished trial: its final VALIDATION metric; None (a failed study trial) for
    anything not ok or without a finite value. Test columns are never read here."""
    if row is None or row.get("status") != "ok":
        return None
    value = row.get(objective.column)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class Tuner:
    """Runs studies on one results root. `execute(trials)` runs trials and writes their rows (the CLI hands
    it the local or Ray executor); selection only ever reads rows through `value_of`."""

    def __init__(self, store: Store, registry: Registry, execute: Execute, root: Path,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.store, self.registry, self.execute, self.root = store, registry, execute, root
        self.on_event = on_event or (lambda message: None)

    def trial_for(self, plan: StudyPlan, hparams: dict[str, Any], role: str, seed: int) -> Trial:
        return Trial(task=plan.task, preset=plan.preset, optimizer=plan.optimizer, hparams=hparams, seed=seed,
                     options=dict(plan.options), schedule=dict(plan.schedule), study=plan.name, study_role=role)

    def run(self, plan: StudyPlan, objective: Objective, seeds: int, sampler_seed: int = 0,
            batch: int = 1) -> StudyResult:
        """Search until the study holds `plan.budget` finished trials, select on validation, re-run the
        selected configuration on `seeds` fresh seeds, and record ranks in the rows."""
        import optuna
        from optuna.trial import TrialState

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own console says what happens
        spec = self.registry.optimizer(plan.optimizer).spec
        distributions = parse_space(plan.optimizer, spec.search_space, spec.defaults)
        space = space_text(spec.search_space)
        storage = journal_storage(self.root)
        study = optuna.create_study(study_name=plan.name, storage=storage, load_if_exists=True,
                                    direction=objective.direction,
                                    sampler=_sampler(plan.sampler, distributions, plan.budget, sampler_seed))
        if not study.user_attrs:
            for key, value in (("search_space", space), ("objective", objective.column),
                               ("optimizer", plan.optimizer), ("task", plan.task), ("preset", plan.preset),
                               ("sampler", plan.sampler), ("schedule", canonical_json(plan.schedule))):
                study.set_user_attr(key, value)
        check_resumable(study, plan, space, objective)

        def tell(number: int, trial: Trial) -> None:
            value = value_of(read_row(self.store, trial.trial_id), objective)
            if value is None:
                study.tell(number, state=TrialState.FAIL)
            else:
                study.tell(number, value)

        # a study trial left RUNNING by a driver that died (kill -9): run it again here, same configuration
        for ft in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not _driver_alive(ft.user_attrs.get("driver")):
                trial = self.trial_for(plan, hparams_for(ft.params, spec.defaults), "search", SEARCH_SEED)
                self.on_event(f"resuming study trial {ft.number} of {plan.name} (its driver is gone)")
                if not self.store.has(trial.trial_id):
                    self.execute([trial])
                tell(ft.number, trial)
        while True:
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            room = plan.budget - finished - running
            if room <= 0:
                if running:  # another driver's trials: this one waits for nothing; its rows come later
                    self.on_event(f"{running} trial(s) of {plan.name} are run by another driver")
                break
            asked = []
            for _ in range(min(batch, room)):
                ft = study.ask(dict(distributions))
                ft.set_user_attr("driver", _driver())
                asked.append((ft.number, self.trial_for(plan, hparams_for(ft.params, spec.defaults), "search",
                                                        SEARCH_SEED)))
            self.execute([t for _, t in asked if not self.store.has(t.trial_id)])
            for number, trial in asked:
                tell(number, trial)
        search = self._configurations(plan, study, spec.defaults)
        selected = next((s for s in search if s["rank"] == 1), None)
        final_ids: list[str] = []
        if selected is not None:
            finals = [self.trial_for(plan, selected["hparams"], "final", FINAL_SEED_BASE + i) for i in range(seeds)]
            self.execute([t for t in finals if not self.store.has(t.trial_id)])
            final_ids = [t.trial_id for t in finals]
        self._annotate(plan, space, search, final_ids)
        return StudyResult(plan, objective, search, selected, final_ids)

    def _configurations(self, plan: StudyPlan, study: Any, defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One entry per distinct configuration the study finished, ranked on its validation value (1 = best,
        ties to the earlier trial); failed configurations have no rank."""
        from optuna.trial import TrialState

        seen: dict[str, dict[str, Any]] = {}
        for ft in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            if ft.state not in (TrialState.COMPLETE, TrialState.FAIL):
                continue
            hp = hparams_for(ft.params, defaults)
            trial = self.trial_for(plan, hp, "search", SEARCH_SEED)
            if trial.config_id in seen:
                continue
            value = float(ft.value) if ft.state == TrialState.COMPLETE and ft.value is not None else None
            seen[trial.config_id] = {"number": ft.number, "trial_id": trial.trial_id, "hparams": hp, "value": value,
                                     "config": config_label(plan.optimizer, hp, plan.schedule, defaults),
                                     "rank": None}
        ok = [s for s in seen.values() if s["value"] is not None]
        sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
        for rank, s in enumerate(sorted(ok, key=lambda s: (sign * s["value"], s["number"])), start=1):
            s["rank"] = rank
        return sorted(seen.values(), key=lambda s: (s["rank"] is None, s["rank"] or 0, s["number"]))

    def _annotate(self, plan: StudyPlan, space: str, search: list[dict[str, Any]], final_ids: list[str]) -> None:
        """Write each row's study facts: budget, search space, the configuration's rank, whether it was chosen."""
        updates = {s["trial_id"]: (s["rank"], s["rank"] == 1) for s in search}
        updates.update({tid: (1, True) for tid in final_ids})
        for trial_id, (rank, selected) in updates.items():
            set_columns(self.store, trial_id, {"study_budget": plan.budget, "search_space": space,
                                               "config_rank": rank, "selected": bool(selected)})


def set_columns(store: Store, trial_id: str, values: Mapping[str, Any]) -> bool:
    """Rewrite one trial's row file with `values` set (atomically: the old file or the new one, never half).
    False when the trial has no file of its own (e.g. compacted into a segment)."""
    rel = f"trials/{trial_id}.parquet"
    try:
        table = pq.read_table(str(store.trial_path(trial_id)), filesystem=store.loc.fs)
    except (OSError, pa.ArrowInvalid):
        return False
    for name, value in values.items():
        if name not in table.column_names:
            continue
        i = table.column_names.index(name)
        table = table.set_column(i, table.schema.field(i), pa.array([value], type=table.schema.field(i).type))
    storefs.write_table_atomic(store.loc, rel, table)
    return True


def describe_space(space: Mapping[str, Any]) -> str:
    """{"lr": ("log-uniform", 1e-5, 1e-1)} -> 'lr log-uniform [1e-05, 0.1]'."""
    parts = []
    for key, v in space.items():
        parts.append(f"{key} {v[0]} {list(v[1])}" if v[0] == "choice" else f"{key} {v[0]} [{v[1]:g}, {v[2]:g}]")
    return "; ".join(parts)
