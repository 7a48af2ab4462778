"""What a run was asked for, as one value, and the checks that need no plugin.

The CLI parses its flags into a `RunRequest` and hands it to the planner (`planner.plan_run`), which checks it
whole and answers a plan or one `OptbenchError`; the command only prints. Checking here rather than in each
command means `run` and `tune` refuse a setting with the same sentence, and a mistaken setting (nan, inf, 0,
-1) is refused before anything runs instead of being recorded in every row, where it would count as done.

Field names mirror the flags (`trial_timeout` is `--trial-timeout`), so a message names the flag as typed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from optbench.errors import OptbenchError


@dataclass(frozen=True)
class RunRequest:
    """Everything `optbench run` was asked, unchecked. `dry_run` only plans: the machine is not consulted."""

    optimizers: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()  # empty: the suite's tasks
    suite: str = "standard"
    preset: str = "smoke"
    seeds: int = 1
    hp: tuple[str, ...] = ()
    schedules: tuple[str, ...] = ()
    device: str = "cpu"
    data_dir: Path | None = None
    synthetic: bool = False
    amp: str | None = None
    channels_last: bool = False
    metrics: tuple[str, ...] = ()  # empty: the default set
    no_metrics: bool = False
    metrics_every: int = 0
    trial_timeout: float | None = None
    workers: int = 1
    torch_threads: int | None = None  # None: worker.default_threads
    alone: tuple[str, ...] = ()
    claim_ttl: float | None = None  # None: claims.claim_ttl's default
    executor: str = "local"
    address: str | None = None
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    ray_timeout: float = 30.0
    dry_run: bool = False


@dataclass(frozen=True)
class TuneRequest:
    """What `optbench tune` was asked: the settings it shares with `optbench run` (there, `seeds` are the fresh
    seeds the selected configuration is re-run on, and one schedule at most is given) and the search's own."""

    run: RunRequest
    budget: int = 1
    sampler: str = "tpe"
    study: str = "tune"
    sampler_seed: int = 0


def flag(name: str) -> str:
    """The command-line flag of a request field: `trial_timeout` -> `--trial-timeout`."""
    return "--" + name.replace("_", "-")


def _seconds(name: str, value: float | None) -> None:
    """Absent, or a finite number of seconds above 0: nan, inf, 0 and -1 would otherwise be recorded in every
    row, or silently mean no limit."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise OptbenchError(f"{flag(name)} must be a finite number of seconds above 0, not {value:g}.",
                            "Leave it out for no time limit." if name == "trial_timeout"
                            else "Leave it out for the default.")


def _at_least_one(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise OptbenchError(f"{flag(name)} must be at least 1, not {value}.", "Leave it out for the default.")


def _not_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise OptbenchError(f"{flag(name)} must be a finite number of 0 or more, not {value:g}.",
                            "Leave it out for the default.")


def check_settings(request: RunRequest) -> None:
    """Every check that needs neither the plugins nor the machine: durations, counts, contradictions and the
    data directory. Raises OptbenchError, one sentence and what to do."""
    for name in ("trial_timeout", "claim_ttl", "ray_timeout"):
        _seconds(name, getattr(request, name))
    for name in ("seeds", "workers", "torch_threads"):
        _at_least_one(name, getattr(request, name))
    for name in ("metrics_every", "gpus_per_trial", "cpus_per_trial"):
        _not_negative(name, getattr(request, name))
    if request.no_metrics and request.metrics:
        raise OptbenchError("--no-metrics and --metrics contradict each other.", "Pass one of them.")
    if request.data_dir is not None and not request.data_dir.is_dir():
        raise OptbenchError(f"the data directory {request.data_dir} does not exist.",
                            "Pass --data-dir (or $OPTBENCH_DATA) pointing at your datasets, or use --synthetic.")


def check_device(request: RunRequest) -> None:
    """The device this machine must provide: with the local executor, --device cuda needs a CUDA device here
    (on Ray the workers need it, not the driver)."""
    if request.device == "cuda" and request.executor == "local":
        import torch

        if not torch.cuda.is_available():
            raise OptbenchError("--device cuda was asked for, but torch sees no CUDA device.",
                                "Use --device cpu or --device auto.")

