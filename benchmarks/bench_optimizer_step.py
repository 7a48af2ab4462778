"""pytest-benchmark micro-benchmarks of `optimizer.step()` at 10M parameters in 50 tensors.

Not part of the test suite (pyproject's testpaths is tests/); run it by path:

    OMP_NUM_THREADS=2 pytest benchmarks/bench_optimizer_step.py --benchmark-only

Every first-party optimizer in the registry that needs only gradients is timed with its defaults (the others
show as skipped, with the reason), plus torch.optim.AdamW with foreach=True and fused=True and Lion's step
implementations. `extra_info` holds the ratio to the fastest AdamW kernel measured in this same session (the
number to compare across machines) and the memory-traffic floor. See benchmarks/README.md for baselines.
"""

from __future__ import annotations

import statistics

import pytest

from benchmarks import stepbench

ROUNDS = 10
WARMUP = 3
DEVICE = "cpu"

_CANDIDATES, _SKIPPED = stepbench.all_candidates()
PARAMS = [pytest.param(c, id=c.name) for c in _CANDIDATES] + [
    pytest.param(None, id=s.name, marks=pytest.mark.skip(reason=f"{s.name}: {s.reason}")) for s in _SKIPPED
]


@pytest.fixture(scope="module")
def reference() -> dict:
    """Copy bandwidth and the AdamW kernels' medians, measured once at the start of the session."""
    bandwidth = stepbench.copy_bandwidth(DEVICE)
    adamw = {}
    for c in stepbench.baselines():
        opt = c.build(stepbench.make_params(DEVICE))
        adamw[c.name] = statistics.median(stepbench.time_steps(opt, DEVICE, ROUNDS, WARMUP))
    fastest = min(adamw, key=adamw.get)
    return {"bandwidth": bandwidth, "adamw": adamw, "fastest": fastest}


@pytest.mark.benchmark(group="optimizer-step-10M", warmup=False)
@pytest.mark.parametrize("candidate", PARAMS)
def test_optimizer_step(benchmark, candidate: stepbench.Candidate, reference: dict) -> None:
    params = stepbench.make_params(DEVICE)
    opt = candidate.build(params)
    for _ in range(WARMUP):  # state allocation and torch.compile stay out of the timing
        opt.step()
    benchmark.pedantic(opt.step, rounds=ROUNDS, iterations=1)
    median = benchmark.stats.stats.median
    floor = stepbench.traffic_bytes(params, opt) / reference["bandwidth"]
    base = reference["adamw"][reference["fastest"]]
    benchmark.extra_info.update(
        ratio_to_fastest_adamw=round(median / base, 4),
        fastest_adamw=reference["fastest"],
        fastest_adamw_ms=round(base * 1e3, 3),
        traffic_floor_ms=round(floor * 1e3, 3),
        ratio_to_floor=round(median / floor, 3),
        state_mb=round(stepbench.state_bytes(opt) / 2**20, 1),
        copy_bandwidth_gbs=round(reference["bandwidth"] / 1e9, 2),
        note=candidate.note,
    )
