"""optbench: an open benchmark suite and leaderboard for deep-learning optimizers.

The public API a plugin needs is re-exported here; everything else is engine internals.
"""

from optbench.hookspecs import hookimpl
from optbench.specs import (
    ColumnSpec,
    MetricContext,
    MetricSpec,
    MetricWhen,
    Needs,
    OptimizerSpec,
    Preset,
    Target,
    TaskInstance,
    TaskSpec,
)

__version__ = "0.1.0"
SUITE_VERSION = "1"  # bump when a task's definition changes so old trial ids stop matching

__all__ = [
    "ColumnSpec",
    "MetricContext",
    "MetricSpec",
    "MetricWhen",
    "Needs",
    "OptimizerSpec",
    "Preset",
    "SUITE_VERSION",
    "Target",
    "TaskInstance",
    "TaskSpec",
    "__version__",
    "hookimpl",
]
