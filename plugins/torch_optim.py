"""torch.optim's optimizers as optbench plugins: the baselines every other optimizer is compared to."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optbench import OptimizerSpec, hookimpl


def fastest_impl(params: list[Any], fused_devices: tuple[str, ...] = ("cpu", "cuda")) -> dict[str, bool]:
    """The fastest of torch's kernels for these parameters: `fused` where the class has one for every tensor's
    device (AdamW, Adam and SGD on CPU and CUDA, Adagrad on CPU), else torch's own choice (foreach on CUDA, the
    per-tensor loop on CPU, where foreach is slower). Measured on the 2-core CI CPU at 10M params in 50 tensors
    (torch 2.14.1, OMP_NUM_THREADS=1): AdamW fused 7.9 ms vs foreach 55.5 ms per step; with the loop, Adam
    measured 2.65x fused AdamW (`python -m benchmarks.step_ratios`), so the same algorithm ranked as slower."""
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]  # param groups too
    fused_ok = all(t.is_floating_point() and t.device.type in fused_devices for t in tensors)
    return {"fused": True} if tensors and fused_ok else {}


def _build_sgd(params: Iterable[Any], **hp: Any) -> torch.optim.Optimizer:
    params = list(params)
    return torch.optim.SGD(
        params, lr=hp["lr"], momentum=hp["momentum"], nesterov=hp["nesterov"], weight_decay=hp["weight_decay"],
        **fastest_impl(params),
    )


def _build_adamw(params: Iterable[Any], **hp: Any) -> torch.optim.Optimizer:
    params = list(params)
    return torch.optim.AdamW(
        params,
        lr=hp["lr"],
        betas=(hp["beta1"], hp["beta2"]),
        eps=hp["eps"],
        weight_decay=hp["weight_decay"],
        **fastest_impl(params),
    )


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="sgd",
            build=_build_sgd,
            defaults={"lr": 0.01, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
            search_space={"lr": ("log-uniform", 1e-4, 1.0), "momentum": ("uniform", 0.0, 0.99),
                          "weight_decay": ("log-uniform", 1e-6, 1e-2)},
            paper="Polyak 1964; Sutskever et al. 2013",
            summary="SGD with heavy-ball momentum (torch.optim.SGD, fused kernel)",
        ),
        OptimizerSpec(
            name="adamw",
            build=_build_adamw,
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
            search_space={"lr": ("log-uniform", 1e-5, 1e-1), "weight_decay": ("log-uniform", 1e-4, 1.0),
                          "beta1": ("uniform", 0.8, 0.95)},
            paper="Loshchilov & Hutter 2019, Decoupled Weight Decay Regularization, arXiv:1711.05101",
            summary="AdamW (torch.optim.AdamW, fused kernel); the speed baseline",
        ),
    ]
