"""Configuration identity: which hyperparameters (learning-rate schedule included) a trial ran with.

Why: seeds may only be averaged inside one configuration. Three runs of one optimizer at three learning rates
are three cells, never one cell with a "seed band". Every row therefore carries `config_id` (a stable short hash
of the optimizer, its canonical hyperparameters and its schedule) and `config` (a label a person can read:
the bare optimizer name for its defaults, else the changed values, e.g. `lion-ib[lr=3e-4]`).

Rows written before these columns existed get both derived from their `hparams` JSON (they all ran the
constant schedule), so old and new rows of the same configuration land in the same cell.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

#: the schedule every row written before schedules existed ran with
CONSTANT: dict[str, Any] = {"name": "constant"}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def normalise_schedule(schedule: Mapping[str, Any] | None) -> dict[str, Any]:
    """{} / None / {"name": "constant"} are the same schedule; anything else is kept as given."""
    if not schedule or dict(schedule) == CONSTANT:
        return dict(CONSTANT)
    return dict(schedule)


def config_id(optimizer: str, hparams: Mapping[str, Any], schedule: Mapping[str, Any] | None = None) -> str:
    """A stable 10-hex-digit hash of (optimizer, hyperparameters, schedule). Tuples and lists hash alike,
    since rows store hyperparameters as JSON."""
    ident = {"optimizer": optimizer, "hparams": json.loads(canonical_json(dict(hparams))),
             "schedule": normalise_schedule(schedule)}
    return hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:10]


def fmt_value(value: Any) -> str:
    """Short, exact enough for a label: 3e-4, 0.1, 1000, 1e+6, true, (0.9,0.99)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            mantissa, exp = f"{value:.3e}".split("e")
            mantissa = mantissa.rstrip("0").rstrip(".")
            return f"{mantissa}e{int(exp)}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(fmt_value(v) for v in value) + ")"
    if isinstance(value, Mapping):
        return "(" + ",".join(f"{k}={fmt_value(v)}" for k, v in sorted(value.items())) + ")"
    return str(value)


def schedule_label(schedule: Mapping[str, Any] | None) -> str:
    """'' for the constant schedule, else its name and the parameters that differ from that schedule's defaults,
    e.g. 'warmup-cosine' or 'warmup-cosine(warmup=0.1)'."""
    sched = normalise_schedule(schedule)
    if sched == CONSTANT:
        return ""
    from optbench.schedules import SCHEDULES

    defaults = SCHEDULES.get(str(sched["name"]), {})
    params = {k: v for k, v in sched.items() if k != "name" and defaults.get(k) != v}
    return str(sched["name"]) + (fmt_value(params) if params else "")


def config_label(optimizer: str, hparams: Mapping[str, Any], schedule: Mapping[str, Any] | None = None,
                 reference: Mapping[str, Any] | None = None) -> str:
    """`optimizer` when hparams equal `reference` (its defaults) and the schedule is constant; otherwise the
    values that differ, sorted by name, e.g. `lion-ib[lr=3e-4,weight_decay=0.1,schedule=warmup-cosine(...)]`.
    Without a reference every hyperparameter is listed."""
    ref = json.loads(canonical_json(dict(reference))) if reference is not None else None
    hp = json.loads(canonical_json(dict(hparams)))
    parts = [f"{k}={fmt_value(hparams[k])}" for k in sorted(hp) if ref is None or ref.get(k, object()) != hp[k]]
    sched = schedule_label(schedule)
    if sched:
        parts.append(f"schedule={sched}")
    return f"{optimizer}[{','.join(parts)}]" if parts else optimizer
