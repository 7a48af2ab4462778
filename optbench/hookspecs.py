"""The whole plugin contract: four hooks. Our own optimizers, metrics and tasks use exactly these."""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "optbench"
ENTRY_POINT_GROUP = "optbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def optbench_register_optimizers() -> list[Any]:
    """Return the OptimizerSpecs this plugin offers."""


@hookspec
def optbench_register_metrics() -> list[Any]:
    """Return the MetricSpecs this plugin offers."""


@hookspec
def optbench_register_tasks() -> list[Any]:
    """Return the TaskSpecs this plugin offers."""


@hookspec
def optbench_trial_finished(trial: dict[str, Any]) -> None:
    """Observe a finished trial's row (exporters, notifications); must not change it."""
