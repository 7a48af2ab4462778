"""MicroAdam against a transcription of the official code (tests/fidelity/ref_microadam.py): 200 steps on the digits
MLP in float64 with the ring buffer in bf16 as the official; the defaults (1% density, m = 10) and a non-default
configuration (denser window, short ring, small blocks so that several top-k and quantisation blocks and a partial
last block occur in every tensor, weight decay)."""

from __future__ import annotations

import pytest
import torch
from harness import from_spec, spec_named
from optbench.plugins import microadam
from ref_microadam import MicroAdamReference

SPEC = spec_named(microadam, "microadam")
CONFIGS = {
    "defaults": {},
    "dense-short-ring-small-blocks+wd": {"lr": 3e-3, "density": 0.1, "m": 4, "block_size": 100,
                                         "quant_block_size": 64, "weight_decay": 0.05, "beta2": 0.99},
}


def reference(**hp):
    h = {**SPEC.defaults, **hp}
    return lambda params: MicroAdamReference(params, lr=h["lr"], m=h["m"], k_init=h["density"],
                                             block_size=h["block_size"], quant_block_size=h["quant_block_size"],
                                             betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                                             weight_decay=h["weight_decay"], value_dtype=torch.bfloat16)


@pytest.mark.parametrize("config", CONFIGS)
def test_microadam_matches_official_rule(config: str, fidelity) -> None:
    hp = CONFIGS[config]
    print(fidelity(from_spec(SPEC, **hp), reference(**hp), model="mlp"))


def test_microadam_runs_under_float64_default_dtype() -> None:
    """The harness runs with float64 as the default dtype; a float32 model must still get float32 state math."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        p = torch.nn.Parameter(torch.randn(300, dtype=torch.float32))
        p.grad = torch.randn(300, dtype=torch.float32)
        opt = microadam.MicroAdam([p], density=0.1, block_size=64, quant_block_size=32)
        for _ in range(3):
            opt.step()
        assert p.dtype == torch.float32 and torch.isfinite(p).all()
        assert opt.state[p]["qmin"].dtype == torch.float32
    finally:
        torch.set_default_dtype(old)
