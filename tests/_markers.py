"""Markers shared by test modules."""

from __future__ import annotations

import importlib.util

import pytest

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install 'optbench[ray]')")
