"""Settings the engine reads instead of naming a particular plugin.

The speed reference is the optimizer every step-time ratio divides by (same run, same task and seed). It is
a setting, not a name written into the engine: set $OPTBENCH_SPEED_REF to use another registered optimizer.
"""

from __future__ import annotations

import os

#: the optimizer speed ratios are taken against unless $OPTBENCH_SPEED_REF names another
DEFAULT_SPEED_REFERENCE = "adamw"


def speed_reference() -> str:
    """The speed reference optimizer's name: $OPTBENCH_SPEED_REF, else DEFAULT_SPEED_REFERENCE."""
    return os.environ.get("OPTBENCH_SPEED_REF", "").strip() or DEFAULT_SPEED_REFERENCE
