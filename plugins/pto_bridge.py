"""Bridge to the `pytorch-optimizer` package: every optimizer its `get_supported_optimizers()` lists becomes
`pto-<name>`, so a hundred-odd published optimizers can be benchmarked without writing a plugin for each.

- Defaults come from the class signature; only numeric, bool and tuple defaults become hyperparameters
  (anything else keeps the class's own default and cannot be overridden with --hp).
- `needs` is inferred from the class: one that uses Hutchinson Hessian estimates needs `HESSIAN` (its
  step is then called without the closure, since the runner's gradients already carry the graph); one whose
  step refuses to run without a closure needs `CLOSURE`; everything else gets plain `GRADIENT`.
- Classes built on a model instead of parameters (LOMO, AdaLOMO, Adam-mini) declare `wants_model`.
- A class that cannot be built (a required argument with no default, e.g. Ranger21's `num_iterations`, or an
  optimizer that wraps another one) raises a one-sentence error at build time, which the runner turns into a
  `failed` row; nothing here can crash the registry.
When the package is not installed this plugin registers nothing (it is an optional extra: `optbench[pto]`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import Needs, OptimizerSpec, hookimpl

PREFIX = "pto-"
_SKIP_ARGS = {"self", "params", "model"}


def kebab(name: str) -> str:
    """'SophiaH' / 'schedulefree_adamw' -> 'sophiah' / 'schedulefree-adamw', prefixed with 'pto-'."""
    return PREFIX + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _is_hparam(value: Any) -> bool:
    if isinstance(value, (bool, int, float)):
        return True
    return isinstance(value, tuple) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )


def signature_defaults(cls: type) -> tuple[dict[str, Any], list[str], bool]:
    """(hyperparameter defaults, required arguments without a default, takes a model instead of params)."""
    params = list(inspect.signature(cls.__init__).parameters.values())
    defaults, required = {}, []
    first = next((p.name for p in params if p.name != "self"), "")
    for p in params:
        if p.name in _SKIP_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            required.append(p.name)
        elif _is_hparam(p.default):
            defaults[p.name] = p.default
    return defaults, required, first == "model"


def _source(fn: Any) -> str:
    """A function's source (cheap, unlike a class's, which re-parses the whole module); '' if unavailable."""
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""


def infer_needs(cls: type) -> Needs:
    step_source = _source(cls.step)
    if "hutchinson" in step_source.lower():
        return Needs.HESSIAN
    closure_arg = inspect.signature(cls.step).parameters.get("closure")
    if "NoClosureError" in step_source or (closure_arg is not None and closure_arg.default is inspect.Parameter.empty):
        return Needs.CLOSURE
    return Needs.GRADIENT


def uses_muon_flag(cls: type) -> bool:
    """Muon-family classes want each param group to say `use_muon` (Muon for 2-D weights, AdamW elsewhere)."""
    return any("use_muon" in _source(vars(k)[name]) for k in cls.__mro__ for name in ("__init__", "step")
               if name in vars(k) and k.__module__.startswith("pytorch_optimizer"))


def split_for_muon(params: Iterable[Any]) -> list[dict[str, Any]]:
    """Each group -> a use_muon=True group of its 2-D tensors and a use_muon=False group of the others."""
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    out = []
    for g in groups:
        ps = list(g["params"])
        extra = {k: v for k, v in g.items() if k != "params"}
        for flag, sel in ((True, [p for p in ps if p.ndim == 2]), (False, [p for p in ps if p.ndim != 2])):
            if sel:
                out.append({**extra, "params": sel, "use_muon": flag})
    return out


def _variant(cls: type, needs: Needs) -> type:
    """HESSIAN: a subclass whose step ignores the closure: the runner's pre-step backward used create_graph=True,
    and re-running the closure (which back-propagates without the graph) would break the Hutchinson estimate.
    CLOSURE: a subclass that calls the closure with gradients enabled (some steps call it under no_grad)."""
    if needs is Needs.HESSIAN:

        def step(self: Any, closure: Callable[..., Any] | None = None, **kw: Any) -> Any:
            return cls.step(self, None, **kw)
    elif needs is Needs.CLOSURE:

        def step(self: Any, closure: Callable[..., Any] | None = None, **kw: Any) -> Any:
            if closure is None:
                return cls.step(self, None, **kw)

            def with_grad() -> Any:
                with torch.enable_grad():
                    return closure()

            return cls.step(self, with_grad, **kw)
    else:
        return cls
    return type(cls.__name__, (cls,), {"step": step, "__doc__": cls.__doc__, "__module__": cls.__module__})


def make_builder(cls: type, public: str, tuple_keys: frozenset[str], required: list[str], on_model: bool,
                 needs: Needs) -> Callable[..., torch.optim.Optimizer]:
    target = _variant(cls, needs)
    muon = uses_muon_flag(cls)

    def build(params: Iterable[Any], model: torch.nn.Module | None = None, **hp: Any) -> torch.optim.Optimizer:
        if required:
            raise ValueError(
                f"{public} cannot be built: pytorch_optimizer.{cls.__name__} requires {', '.join(required)}, "
                "which has no default the bridge could use; write a plugin that supplies it"
            )
        hp = {k: tuple(v) if k in tuple_keys else v for k, v in hp.items()}
        if on_model:
            if model is None:
                raise ValueError(f"{public} trains a model, not a list of parameters, and none was given")
            return target(model, **hp)
        return target(split_for_muon(params) if muon else params, **hp)

    return build


def bridge_specs() -> list[OptimizerSpec]:
    """The specs for every optimizer pytorch-optimizer lists; [] when the package is not installed."""
    try:
        import pytorch_optimizer
    except ImportError:
        return []
    version = getattr(pytorch_optimizer, "__version__", "?")
    specs = []
    for name in pytorch_optimizer.get_supported_optimizers():
        try:
            cls = pytorch_optimizer.load_optimizer(name)
            defaults, required, on_model = signature_defaults(cls)
        except Exception:  # noqa: BLE001, S112 - one odd class must not hide the others
            continue
        public = kebab(name)
        needs = infer_needs(cls)
        tuple_keys = frozenset(k for k, v in defaults.items() if isinstance(v, tuple))
        doc = (inspect.getdoc(cls) or "").strip().splitlines()
        specs.append(OptimizerSpec(
            name=public,
            build=make_builder(cls, public, tuple_keys, required, on_model, needs),
            defaults=defaults,
            search_space={"lr": ("log-uniform", 1e-5, 1e-1)} if "lr" in defaults else {},
            needs=needs,
            wants_model=on_model,
            paper=f"pytorch-optimizer {version}: {cls.__module__}.{cls.__name__}",
            summary=(doc[0] if doc else cls.__name__) + f" (pytorch_optimizer.{cls.__name__})",
        ))
    return specs


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return bridge_specs()
