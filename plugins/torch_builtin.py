"""The rest of torch.optim as optbench plugins (sgd and adamw live in torch_optim.py): every baseline a user
might expect to compare against, with torch's own defaults.

Muon only accepts 2-D parameters; as in its reference recipe, everything else (biases, norms, a quadratic's
1-D vector) is trained by AdamW inside the same optimizer (`MuonWithAdamW`), so `muon` runs on any task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import OptimizerSpec, hookimpl

from .torch_optim import fastest_impl

#: classes with a fused kernel, and the devices it runs on (every other class keeps torch's default kernel)
FUSED_DEVICES: dict[type[torch.optim.Optimizer], tuple[str, ...]] = {
    torch.optim.Adam: ("cpu", "cuda"), torch.optim.Adagrad: ("cpu",)}


def _betas(hp: dict[str, Any]) -> dict[str, Any]:
    """beta1/beta2 hyperparameters (flat, so `--hp beta2=0.99` works) -> torch's `betas` tuple."""
    hp = dict(hp)
    if "beta1" in hp:
        hp["betas"] = (hp.pop("beta1"), hp.pop("beta2"))
    return hp


def _builder(cls: type[torch.optim.Optimizer]) -> Callable[..., torch.optim.Optimizer]:
    def build(params: Iterable[Any], **hp: Any) -> torch.optim.Optimizer:
        params = list(params)
        impl = fastest_impl(params, FUSED_DEVICES[cls]) if cls in FUSED_DEVICES else {}
        return cls(params, **_betas(hp), **impl)

    build.__doc__ = f"Build torch.optim.{cls.__name__}."
    return build


class MuonWithAdamW(torch.optim.Optimizer):
    """torch.optim.Muon on 2-D parameters, torch.optim.AdamW on the others, as one optimizer.

    Each user group is split into a Muon group and an AdamW group (tagged by `kind`), so per-group lr still
    applies; state and groups live in this optimizer, so `state_dict()`/`load_state_dict()` work as usual.
    The inner torch optimizers are re-pointed at this optimizer's groups and state on every step.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, adamw_lr: float = 1e-3,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8) -> None:
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        split: list[dict[str, Any]] = []
        for g in groups:
            ps = list(g["params"])
            extra = {k: v for k, v in g.items() if k != "params"}
            mat = [p for p in ps if p.ndim == 2]
            rest = [p for p in ps if p.ndim != 2]
            if mat:
                split.append({"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov,
                              "ns_steps": ns_steps, "ns_coefficients": (3.4445, -4.775, 2.0315), "eps": 1e-7,
                              "adjust_lr_fn": None, **extra, "params": mat, "kind": "muon"})
            if rest:
                # a group's own lr scales the AdamW part in proportion, so two groups with different lr differ
                ratio = extra.get("lr", lr) / lr if lr else 1.0
                split.append({"lr": adamw_lr * ratio, "betas": tuple(adamw_betas), "eps": adamw_eps,
                              "weight_decay": weight_decay, "params": rest, "kind": "adamw"})
        super().__init__(split, {"lr": lr})
        mats = [p for g in self.param_groups if g["kind"] == "muon" for p in g["params"]]
        rests = [p for g in self.param_groups if g["kind"] == "adamw" for p in g["params"]]
        self._muon = torch.optim.Muon(mats) if mats else None
        self._adamw = torch.optim.AdamW(rests, foreach=False) if rests else None

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for kind, inner in (("muon", self._muon), ("adamw", self._adamw)):
            if inner is None:
                continue
            inner.param_groups = [g for g in self.param_groups if g["kind"] == kind]
            for g in inner.param_groups:  # AdamW's keyword defaults (amsgrad, foreach, ...) after a load
                for k, v in inner.defaults.items():
                    g.setdefault(k, v)
            inner.state = self.state
            inner.step()
        return loss


def _build_muon(params: Iterable[Any], **hp: Any) -> MuonWithAdamW:
    return MuonWithAdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"], momentum=hp["momentum"],
                         nesterov=hp["nesterov"], ns_steps=hp["ns_steps"], adamw_lr=hp["adamw_lr"],
                         adamw_betas=(hp["adamw_beta1"], hp["adamw_beta2"]), adamw_eps=hp["adamw_eps"])


ADAM_BETAS = {"beta1": 0.9, "beta2": 0.999}
LR = ("log-uniform", 1e-5, 1e-1)
L2_DECAY = ("log-uniform", 1e-6, 1e-2)  # every builtin here applies weight_decay as L2 (Adafactor: decoupled)

#: (name, class, defaults (torch's own), paper, summary)
BUILTINS: list[tuple[str, type[torch.optim.Optimizer], dict[str, Any], str, str]] = [
    ("adam", torch.optim.Adam, {"lr": 1e-3, **ADAM_BETAS, "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
     "Kingma & Ba 2015, arXiv:1412.6980", "Adam (torch.optim.Adam, fused kernel), L2 weight decay"),
    ("nadam", torch.optim.NAdam, {"lr": 2e-3, **ADAM_BETAS, "eps": 1e-8, "weight_decay": 0.0,
                                  "momentum_decay": 4e-3}, "Dozat 2016, Incorporating Nesterov Momentum into Adam",
     "NAdam (torch.optim.NAdam)"),
    ("radam", torch.optim.RAdam, {"lr": 1e-3, **ADAM_BETAS, "eps": 1e-8, "weight_decay": 0.0},
     "Liu et al. 2020, arXiv:1908.03265", "Rectified Adam (torch.optim.RAdam)"),
    ("rmsprop", torch.optim.RMSprop, {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
                                      "centered": False}, "Hinton, Coursera lecture 6e (2012)",
     "RMSprop (torch.optim.RMSprop)"),
    ("adagrad", torch.optim.Adagrad, {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0,
                                      "initial_accumulator_value": 0.0, "eps": 1e-10},
     "Duchi et al. 2011, JMLR 12", "Adagrad (torch.optim.Adagrad, fused kernel on CPU)"),
    ("adadelta", torch.optim.Adadelta, {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0},
     "Zeiler 2012, arXiv:1212.5701", "Adadelta (torch.optim.Adadelta)"),
    ("adamax", torch.optim.Adamax, {"lr": 2e-3, **ADAM_BETAS, "eps": 1e-8, "weight_decay": 0.0},
     "Kingma & Ba 2015, arXiv:1412.6980 (sec. 7)", "Adamax, the infinity-norm Adam (torch.optim.Adamax)"),
    ("asgd", torch.optim.ASGD, {"lr": 1e-2, "lambd": 1e-4, "alpha": 0.75, "t0": 1e6, "weight_decay": 0.0},
     "Polyak & Juditsky 1992", "Averaged SGD (torch.optim.ASGD)"),
    ("adafactor", torch.optim.Adafactor, {"lr": 1e-2, "beta2_decay": -0.8, "d": 1.0, "weight_decay": 0.0},
     "Shazeer & Stern 2018, arXiv:1804.04235", "Adafactor, factored second moments (torch.optim.Adafactor)"),
]


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    specs = [
        OptimizerSpec(name=name, build=_builder(cls), defaults=defaults,
                      search_space={"lr": LR, "weight_decay": L2_DECAY}, paper=paper, summary=summary)
        for name, cls, defaults, paper, summary in BUILTINS
    ]
    if hasattr(torch.optim, "Muon"):  # torch >= 2.9
        specs.append(OptimizerSpec(
            name="muon",
            build=_build_muon,
            defaults={"lr": 1e-3, "weight_decay": 0.1, "momentum": 0.95, "nesterov": True, "ns_steps": 5,
                      "adamw_lr": 1e-3, "adamw_beta1": 0.9, "adamw_beta2": 0.999, "adamw_eps": 1e-8},
            search_space={"lr": LR, "adamw_lr": LR, "weight_decay": ("log-uniform", 1e-4, 1.0)},
            paper="Jordan et al. 2024, Muon (kellerjordan.github.io/posts/muon)",
            summary="torch.optim.Muon on 2-D weights, AdamW (adamw_*) on every other parameter",
        ))
    return specs
