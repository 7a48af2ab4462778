"""Learning-rate schedules, applied by the runner identically to every optimizer.

Why in the runner and not in the optimizers: a comparison is only fair when every optimizer gets the same
schedule, and most plugins know nothing of schedules. Before step t (1-based) of a T-step budget the runner sets
each param group's `lr` to its base lr (the one the optimizer was built with) times `factor(t)`. A schedule is
part of the configuration (optbench/config.py) and is recorded in every row.

- constant:       factor = 1
- warmup-cosine:  linear warm-up over W = round(warmup * T) steps (factor t/W), then cosine decay from 1 to
                  `final` at step T: final + (1 - final) * (1 + cos(pi * (t - W) / (T - W))) / 2
- warmup-linear:  the same warm-up, then linear decay from 1 to `final` at step T:
                  1 - (1 - final) * (t - W) / (T - W)

`warmup` is a fraction of the budget, so one schedule means the same thing at every preset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optbench.errors import OptbenchError

#: each schedule's parameters and their defaults
SCHEDULES: dict[str, dict[str, float]] = {
    "constant": {},
    "warmup-cosine": {"warmup": 0.05, "final": 0.0},
    "warmup-linear": {"warmup": 0.05, "final": 0.0},
}


def parse_schedule(text: str) -> dict[str, Any]:
    """'warmup-cosine' or 'warmup-cosine:warmup=0.1,final=0.01' -> the canonical dict (every parameter filled
    in, so equal schedules hash equally); 'constant' -> {"name": "constant"}."""
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if name not in SCHEDULES:
        raise OptbenchError(f"unknown schedule {name!r}.", f"Use one of: {', '.join(SCHEDULES)}.")
    params: dict[str, Any] = dict(SCHEDULES[name])
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or key not in params:
            known = ", ".join(SCHEDULES[name]) or "none"
            raise OptbenchError(f"schedule {name!r} has no parameter {item!r}.", f"Its parameters: {known}.")
        try:
            params[key] = float(raw)
        except ValueError:
            raise OptbenchError(f"schedule parameter {key}={raw!r} is not a number.") from None
    return check_schedule({"name": name, **params})


def check_schedule(schedule: Mapping[str, Any]) -> dict[str, Any]:
    sched = dict(schedule)
    name = sched.get("name", "constant")
    if name not in SCHEDULES:
        raise OptbenchError(f"unknown schedule {name!r}.", f"Use one of: {', '.join(SCHEDULES)}.")
    warmup, final = float(sched.get("warmup", 0.0)), float(sched.get("final", 0.0))
    if not 0.0 <= warmup < 1.0:
        raise OptbenchError(f"schedule warmup={warmup:g} must be a fraction of the budget in [0, 1).")
    if not 0.0 <= final <= 1.0:
        raise OptbenchError(f"schedule final={final:g} must be a fraction of the peak lr in [0, 1].")
    return {"name": name, **{k: float(sched.get(k, v)) for k, v in SCHEDULES[name].items()}}


def lr_factor(schedule: Mapping[str, Any] | None, step: int, budget: int) -> float:
    """The multiplier of the base lr at training step `step` (1..budget)."""
    name = (schedule or {}).get("name", "constant")
    if name == "constant":
        return 1.0
    warm = round(float(schedule["warmup"]) * budget)  # type: ignore[index]
    final = float(schedule.get("final", 0.0))  # type: ignore[union-attr]
    if step <= warm:
        return step / warm
    progress = (step - warm) / max(1, budget - warm)
    if name == "warmup-cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "warmup-linear":
        return 1.0 - (1.0 - final) * progress
    raise ValueError(f"unknown schedule {name!r}")


class LRScheduler:
    """Scales every param group's `lr` from the value it had when the optimizer was built."""

    def __init__(self, optimizer: Any, schedule: Mapping[str, Any] | None, budget: int) -> None:
        self.schedule = dict(schedule or {})
        self.budget = budget
        self.active = self.schedule.get("name", "constant") != "constant"
        self.groups = list(optimizer.param_groups)
        if self.active and any("lr" not in g for g in self.groups):
            raise ValueError("this optimizer's param groups have no 'lr' for the schedule to scale")
        self.base = [g.get("lr") for g in self.groups]

    def set_step(self, step: int) -> float:
        factor = lr_factor(self.schedule, step, self.budget) if self.active else 1.0
        if self.active:
            for group, base in zip(self.groups, self.base, strict=True):
                group["lr"] = base * factor
        return factor
