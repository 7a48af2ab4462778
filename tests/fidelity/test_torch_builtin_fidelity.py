"""The torch.optim baselines are torch.optim itself: each spec's defaults are the named class's own defaults, its
build returns that class, and training with the spec matches the class built directly (digits MLP, float64)."""

from __future__ import annotations

import inspect

import pytest
import torch
from harness import spec_named
from optbench.plugins import torch_builtin, torch_optim

BUILTIN_CLASSES = {name: cls for name, cls, *_ in torch_builtin.BUILTINS}
TORCH_OPTIM_CLASSES = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}
STEPS = 60  # an identity check: fewer steps than the algorithm tests


def _torch_defaults(cls: type) -> dict:
    return {k: v.default for k, v in inspect.signature(cls.__init__).parameters.items()
            if v.default is not inspect.Parameter.empty}


def _flat(hp: dict) -> dict:
    hp = dict(hp)
    if "beta1" in hp:
        hp["betas"] = (hp.pop("beta1"), hp.pop("beta2"))
    return hp


@pytest.mark.parametrize("name", sorted(BUILTIN_CLASSES))
def test_builtin_spec_is_the_torch_class_with_its_defaults(fidelity, name: str) -> None:
    cls = BUILTIN_CLASSES[name]
    spec = spec_named(torch_builtin, name)
    theirs = _torch_defaults(cls)
    for key, value in _flat(spec.defaults).items():
        assert theirs[key] == value, f"{name}: default {key}={value!r}, torch.optim.{cls.__name__} has {theirs[key]!r}"
    # a class with a fused kernel is built with it (Adam, Adagrad on CPU): its rounding may differ from torch's
    # default for-loop kernel by ~1e-16 per step, so 1e-12 there; every other class is torch's own, bit for bit
    fused = cls in torch_builtin.FUSED_DEVICES
    cmp = fidelity(lambda ps: spec.build(ps, **spec.defaults), lambda ps: cls(ps), steps=STEPS,
                   rtol=1e-12 if fused else 0.0, min_travel=1e-3)
    assert type(cmp.ours.optimizer) is cls
    assert bool(cmp.ours.optimizer.defaults.get("fused")) is fused


@pytest.mark.parametrize("name", sorted(TORCH_OPTIM_CLASSES))
def test_sgd_and_adamw_specs_are_torch_optim(fidelity, name: str) -> None:
    cls = TORCH_OPTIM_CLASSES[name]
    spec = spec_named(torch_optim, name)
    hp = _flat(spec.defaults)
    theirs = _torch_defaults(cls)
    if name == "adamw":  # AdamW keeps torch's defaults; only the kernel (fused) is chosen, for speed. SGD's spec
        assert all(theirs[k] == v for k, v in hp.items())  # is heavy-ball momentum 0.9, on purpose (not a default)
    # the rounding of a fused kernel may differ from torch's default for-loop kernel: 1e-12, not 0
    cmp = fidelity(lambda ps: spec.build(ps, **spec.defaults), lambda ps: cls(ps, **hp), steps=STEPS, rtol=1e-12,
                   min_travel=1e-3)
    assert type(cmp.ours.optimizer) is cls
    assert cmp.ours.optimizer.defaults["fused"] is True  # the fastest kernel, like every fused-capable baseline


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9")
def test_muon_is_torch_muon_on_matrices_and_adamw_elsewhere(fidelity) -> None:
    spec = spec_named(torch_builtin, "muon")
    hp = spec.defaults

    class Both(torch.optim.Optimizer):
        def __init__(self, params):
            params = list(params)
            super().__init__(params, {})
            self.muon = torch.optim.Muon([p for p in params if p.ndim == 2], lr=hp["lr"],
                                         weight_decay=hp["weight_decay"], momentum=hp["momentum"],
                                         nesterov=hp["nesterov"], ns_steps=hp["ns_steps"])
            self.adamw = torch.optim.AdamW([p for p in params if p.ndim != 2], lr=hp["adamw_lr"],
                                           betas=(hp["adamw_beta1"], hp["adamw_beta2"]), eps=hp["adamw_eps"],
                                           weight_decay=hp["weight_decay"], foreach=False)

        def step(self, closure=None):
            self.muon.step()
            self.adamw.step()

    fidelity(lambda ps: spec.build(ps, **hp), Both, steps=STEPS, rtol=1e-12, min_travel=1e-3)
