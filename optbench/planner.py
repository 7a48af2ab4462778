"""Turns what the user asked for (names, presets, seeds, --hp overrides) into a list of trials.

Every check that can fail happens here, before anything runs: unknown names, unknown presets, and
hyperparameter values of the wrong type for the optimizer's defaults.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Sequence
from typing import Any

from optbench.errors import OptbenchError
from optbench.registry import Registry
from optbench.trial import Trial


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


def parse_hp_overrides(items: Iterable[str]) -> list[tuple[str | None, str, Any]]:
    """`--hp lr=1e-3` or `--hp lion-ib.lr=1e-3` -> (optimizer or None, key, value)."""
    out = []
    for item in items:
        if "=" not in item:
            raise OptbenchError(f"--hp {item!r} is not KEY=VALUE.", "Write it like --hp lr=3e-4 or --hp lion.lr=3e-4.")
        key, raw = item.split("=", 1)
        opt: str | None = None
        if "." in key:
            opt, key = key.split(".", 1)
        out.append((opt, key.strip(), parse_hp_value(raw)))
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


def resolve_hparams(registry: Registry, optimizer: str, overrides: Sequence[tuple[str | None, str, Any]]) -> dict:
    spec = registry.optimizer(optimizer).spec
    hp = dict(spec.defaults)
    for opt, key, value in overrides:
        if opt is not None and opt != optimizer:
            continue
        if key not in hp:
            if opt is None:
                continue  # a bare key applies to the optimizers that have it; checked in plan()
            known = ", ".join(sorted(hp)) or "none"
            raise OptbenchError(f"optimizer {optimizer!r} has no hyperparameter {key!r}.", f"It has: {known}.")
        value = coerce_hp(optimizer, key, value, hp[key])
        check_finite(optimizer, key, value, hp[key])
        hp[key] = value
    return hp


def plan(
    registry: Registry,
    optimizers: Sequence[str],
    tasks: Sequence[str],
    preset: str,
    seeds: Sequence[int],
    hp_overrides: Sequence[str] = (),
    options: dict[str, Any] | None = None,
    task_options: dict[str, dict[str, Any]] | None = None,
) -> list[Trial]:
    """Validate everything, then expand the grid tasks x optimizers x seeds. `options` go to every task;
    `task_options` add per-task ones (a suite's declared options)."""
    if not optimizers:
        raise OptbenchError("no optimizer given.", "Name one with --optimizer, e.g. --optimizer lion-ib.")
    for name in optimizers:
        registry.optimizer(name)
    for name in tasks:
        spec = registry.task(name).spec
        if preset not in spec.presets:
            raise OptbenchError(
                f"task {name!r} has no preset {preset!r}.", f"Its presets: {', '.join(spec.presets)}."
            )
    overrides = parse_hp_overrides(hp_overrides)
    for opt, key, _ in overrides:
        if opt is not None:
            registry.optimizer(opt)
            if opt not in optimizers:
                raise OptbenchError(f"--hp {opt}.{key} names optimizer {opt!r}, which is not being run.")
        elif not any(key in registry.optimizer(o).spec.defaults for o in optimizers):
            raise OptbenchError(f"no optimizer being run has a hyperparameter {key!r}.",
                                "See `optbench list optimizers --json` for each one's defaults.")
    hparams = {o: resolve_hparams(registry, o, overrides) for o in optimizers}
    def opts(task: str) -> dict[str, Any]:
        return dict(sorted({**(task_options or {}).get(task, {}), **(options or {})}.items()))

    return [
        Trial(task=t, preset=preset, optimizer=o, hparams=hparams[o], seed=s, options=opts(t))
        for t in tasks
        for o in optimizers
        for s in seeds
    ]
