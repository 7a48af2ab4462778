"""The rational tanh of the fused Lion-IB kernel: its error bound, measured on a dense grid in float64, and its
behaviour at the extremes (odd, saturated, exact zero)."""

from __future__ import annotations

import torch
from optbench.plugins.fused import RATIONAL_TANH_MAX_ABS_ERROR, TANH_CLAMP, rational_tanh


def test_error_bound_on_a_dense_grid() -> None:
    x = torch.linspace(-20.0, 20.0, 2_000_001, dtype=torch.float64)
    err = (rational_tanh(x) - torch.tanh(x)).abs().max().item()
    assert err <= RATIONAL_TANH_MAX_ABS_ERROR
    assert err > 1e-9  # it is an approximation: the bound is not vacuous in float64


def test_float32_error_is_a_few_ulps() -> None:
    x = torch.linspace(-10.0, 10.0, 200_001, dtype=torch.float32)
    err = (rational_tanh(x).double() - torch.tanh(x.double())).abs().max().item()
    assert err <= RATIONAL_TANH_MAX_ABS_ERROR


def test_odd_saturated_and_zero() -> None:
    x = torch.tensor([0.0, 1e-30, -3.0, 3.0, 50.0, -1e30, float("inf")], dtype=torch.float64)
    y = rational_tanh(x)
    assert y[0] == 0.0 and y[2] == -y[3]
    assert abs(float(y[4]) - 1.0) <= RATIONAL_TANH_MAX_ABS_ERROR
    assert abs(float(y[5]) + 1.0) <= RATIONAL_TANH_MAX_ABS_ERROR
    assert float(y[6]) == float(rational_tanh(torch.tensor(TANH_CLAMP, dtype=torch.float64)))
    assert torch.isfinite(y).all()
