"""Shared machinery for the optimizer-step benchmarks: the 10M-parameter workload, the candidates (every
first-party optimizer from the registry plus torch's AdamW kernels and Lion's implementations), a timer, and
the memory-traffic floor.

Speed is only ever reported as a ratio to the fastest AdamW measured in the same process, because absolute
milliseconds move with the machine (and the CI machine is shared).
"""

from __future__ import annotations

import fnmatch
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from optbench import Needs
from optbench.registry import Registry, get_registry
from optbench.selection import FIRST_PARTY, Selection

TOTAL_PARAMS = 10_000_000
#: 40 matrices of 500x498 and 10 vectors of 4,000: exactly 10M parameters in 50 tensors
SHAPES: list[tuple[int, ...]] = [(500, 498)] * 40 + [(4000,)] * 10
#: plugins that wrap another package's optimizers wholesale: not first-party code, left out unless asked for
ENV_SELECT = "OPTBENCH_BENCH_OPTIMIZERS"  # e.g. "lion*,adamw": only these (glob patterns, comma-separated)


@dataclass
class Candidate:
    """One thing to time: `build(params)` returns an optimizer. `note` says what it is."""

    name: str
    build: Callable[[list[torch.Tensor]], torch.optim.Optimizer]
    note: str = ""
    baseline: bool = False  # one of the AdamW kernels the ratios are taken against


@dataclass
class Skipped:
    name: str
    reason: str


def make_params(device: str = "cpu", seed: int = 0) -> list[torch.Tensor]:
    """The workload: parameters with gradients already set (step() is timed alone)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    params = []
    for shape in SHAPES:
        p = torch.randn(shape, generator=gen).mul_(0.02).to(device).requires_grad_(True)
        p.grad = torch.randn(shape, generator=gen).to(device)
        params.append(p)
    assert sum(p.numel() for p in params) == TOTAL_PARAMS
    return params


def _selected(name: str, patterns: str | None) -> bool:
    if not patterns:
        return True
    pats = [pat.strip() for pat in patterns.split(",") if pat.strip()]
    return any(name == pat or fnmatch.fnmatch(name, pat) for pat in pats)  # exact first: "lion-ib[fused]"


def baselines() -> list[Candidate]:
    """torch.optim.AdamW's multi-tensor and fused kernels; the fastest of them is the ratio's denominator."""
    return [
        Candidate("torch-adamw-foreach", lambda ps: torch.optim.AdamW(ps, foreach=True),
                  "torch.optim.AdamW(foreach=True)", baseline=True),
        Candidate("torch-adamw-fused", lambda ps: torch.optim.AdamW(ps, fused=True),
                  "torch.optim.AdamW(fused=True)", baseline=True),
    ]


def lion_variants() -> list[Candidate]:
    """Lion's and Lion-IB's step implementations side by side: how plugins/lion.py picks its default."""
    from optbench.plugins.lion import Lion, LionIB

    out = [Candidate(f"lion[{impl}]", lambda ps, impl=impl: Lion(ps, weight_decay=0.1, impl=impl), f"Lion impl={impl}")
           for impl in ("loop", "foreach", "compiled")]
    out += [Candidate(f"lion-ib[{impl}]", lambda ps, impl=impl: LionIB(ps, weight_decay=0.1, impl=impl),
                      f"LionIB impl={impl}") for impl in ("loop", "fused")]
    out.append(Candidate("lion-ib[fused,exact-tanh]",
                         lambda ps: LionIB(ps, weight_decay=0.1, impl="fused", fast_tanh=False),
                         "LionIB impl=fused, libm tanh"))
    out += [Candidate(f"lion-ib[temperature,{impl}]",
                      lambda ps, impl=impl: LionIB(ps, weight_decay=0.1, mode="temperature", impl=impl),
                      f"LionIB mode=temperature impl={impl}") for impl in ("loop", "fused")]
    return out


def fused_variants() -> list[Candidate]:
    """diffGrad's and FAdam's loop (the reference) next to their fused kernels."""
    from optbench.plugins.diffgrad import DiffGrad
    from optbench.plugins.fadam import FAdam

    out = []
    for impl in ("loop", "fused"):
        out.append(Candidate(f"diffgrad[{impl}]", lambda ps, impl=impl: DiffGrad(ps, impl=impl),
                             f"DiffGrad impl={impl}"))
        out.append(Candidate(f"fadam[{impl}]", lambda ps, impl=impl: FAdam(ps, impl=impl), f"FAdam impl={impl}"))
    return out


def registry_candidates(registry: Registry | None = None, include_bridges: bool = False
                        ) -> tuple[list[Candidate], list[Skipped]]:
    """Every first-party optimizer (distribution `optbench`) that only needs gradients, built with its
    defaults. Those needing closures, HVPs, sampled labels, no gradient at all or the model are skipped:
    their step() alone is not comparable with a gradient step."""
    registry = registry or get_registry()
    patterns = os.environ.get(ENV_SELECT)
    found, skipped = [], []
    selection = FIRST_PARTY if not include_bridges else Selection(distribution=FIRST_PARTY.distribution)
    for name in registry.select("optimizer", selection):
        reg = registry.optimizer(name)
        if not _selected(name, patterns):
            continue
        spec = reg.spec
        if spec.needs != Needs.GRADIENT:
            skipped.append(Skipped(name, f"needs {spec.needs.value}, not plain gradients"))
            continue
        if spec.wants_model:
            skipped.append(Skipped(name, "needs the model (layer hooks)"))
            continue
        defaults = dict(spec.defaults)
        found.append(Candidate(name, lambda ps, spec=spec, hp=defaults: spec.build(ps, **hp), "registry defaults"))
    return found, skipped


def all_candidates(include_bridges: bool = False) -> tuple[list[Candidate], list[Skipped]]:
    found, skipped = registry_candidates(include_bridges=include_bridges)
    patterns = os.environ.get(ENV_SELECT)
    extra = [c for c in baselines() + lion_variants() + fused_variants() if c.baseline or _selected(c.name, patterns)]
    return extra + found, skipped


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(opt: torch.optim.Optimizer, device: str = "cpu", rounds: int = 10, warmup: int = 3) -> list[float]:
    """Seconds per `opt.step()` (after `warmup` untimed steps: state allocation, torch.compile)."""
    for _ in range(warmup):
        opt.step()
    _sync(device)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        opt.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
               if isinstance(v, torch.Tensor) and v.dim() > 0)


def traffic_bytes(params: list[torch.Tensor], opt: torch.optim.Optimizer) -> int:
    """Bytes a step must at least move: read params, grads and state once, write params and state once."""
    p = sum(t.numel() * t.element_size() for t in params)
    return 2 * p + p + 2 * state_bytes(opt)


def copy_bandwidth(device: str = "cpu", nbytes: int = 256 * 2**20, rounds: int = 10) -> float:
    """Bytes per second a large tensor copy moves (read + write) in its fastest round: the reachable memory
    bandwidth (the fastest round, since a floor should not rise because the machine was busy)."""
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    _sync(device)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * nbytes / min(times)


@dataclass
class Measurement:
    name: str
    median_s: float
    floor_s: float  # memory-traffic floor at the measured copy bandwidth
    state_mb: float
    note: str = ""
    baseline: bool = False
    error: str = ""


def measure(candidate: Candidate, bandwidth: float, device: str = "cpu", rounds: int = 10, warmup: int = 3
            ) -> Measurement:
    params = make_params(device)
    try:
        opt = candidate.build(params)
        times = time_steps(opt, device, rounds, warmup)
    except Exception as exc:  # noqa: BLE001 - one optimizer failing at 10M params must not stop the table
        return Measurement(candidate.name, float("nan"), float("nan"), float("nan"), candidate.note,
                           candidate.baseline, f"{type(exc).__name__}: {exc}")
    return Measurement(candidate.name, statistics.median(times), traffic_bytes(params, opt) / bandwidth,
                       state_bytes(opt) / 2**20, candidate.note, candidate.baseline)


def measure_all(candidates: list[Candidate], device: str = "cpu", rounds: int = 10, warmup: int = 3
                ) -> Iterator[Measurement]:
    bandwidth = copy_bandwidth(device)
    for c in candidates:
        yield measure(c, bandwidth, device, rounds, warmup)


@dataclass
class Ratio:
    """An interleaved comparison: `candidate` step time / `reference` step time, round by round."""

    name: str
    reference: str
    median: float
    lo: float  # 25th percentile of the per-round ratios
    hi: float  # 75th percentile
    ref_median_s: float
    rounds: int
    note: str = ""
    error: str = ""


def interleaved_ratio(candidate: Candidate, reference: Candidate, device: str = "cpu", rounds: int = 20,
                      warmup: int = 3, max_step_s: float | None = None) -> Ratio:
    """Time reference and candidate steps alternately (A B, B A, A B, ...; the order flips every round so that
    neither always runs on a warmer cache) in this process, each on its own copy of the workload, and report the
    median and quartiles of the per-round ratios: load that comes and goes hits both sides of a round alike.
    A candidate whose second warm-up step (the first may compile) takes longer than `max_step_s` is reported
    as not timed, instead of holding the table for minutes (Muon at 10M parameters on one thread)."""
    try:
        ref_opt = reference.build(make_params(device, seed=0))
        opt = candidate.build(make_params(device, seed=0))
        for i in range(warmup):
            ref_opt.step()
            t0 = time.perf_counter()
            opt.step()
            _sync(device)
            took = time.perf_counter() - t0
            if max_step_s is not None and i >= 1 and took > max_step_s:
                raise TimeoutError(f"one step took {took:.1f} s (> {max_step_s:g} s); not timed")
        _sync(device)
        ratios, ref_times = [], []
        for r in range(rounds):
            pair = [(ref_opt, 0), (opt, 1)] if r % 2 == 0 else [(opt, 1), (ref_opt, 0)]
            t = [0.0, 0.0]
            for o, i in pair:
                t0 = time.perf_counter()
                o.step()
                _sync(device)
                t[i] = time.perf_counter() - t0
            ratios.append(t[1] / t[0])
            ref_times.append(t[0])
    except Exception as exc:  # noqa: BLE001 - one optimizer failing must not stop the table
        nan = float("nan")
        return Ratio(candidate.name, reference.name, nan, nan, nan, nan, 0, candidate.note,
                     f"{type(exc).__name__}: {exc}")
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return Ratio(candidate.name, reference.name, statistics.median(ratios), q[0], q[2], statistics.median(ref_times),
                 rounds, candidate.note)
