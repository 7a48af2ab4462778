"""Which registered names a script, workflow or benchmark means: one rule, written once.

"Every first-party optimizer, without the bridges that re-export another library's optimizers" used to be
coded separately in the publish script, the benchmark workflow and the step benchmark; they now all ask for
FIRST_PARTY (`optbench list optimizers --first-party --names` from a shell).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Selection:
    """Names kept: matching any of `patterns` (all when empty), from `distribution` (any when None), matching
    none of `exclude` (globs on the name or on the plugin's entry-point name), in `suite` (tasks)."""

    patterns: tuple[str, ...] = ()
    distribution: str | None = None
    exclude: tuple[str, ...] = ()
    suite: str | None = None

    def keeps(self, name: str, plugin: str, distribution: str, suites: Iterable[str] = ()) -> bool:
        if self.patterns and not any(fnmatch.fnmatch(name, p) for p in self.patterns):
            return False
        if self.distribution is not None and distribution != self.distribution:
            return False
        if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(plugin, p) for p in self.exclude):
            return False
        return self.suite is None or self.suite in tuple(suites)


#: plugins whose names end in "-bridge" re-export a whole third-party library (e.g. ~130 optimizers)
BRIDGES = ("*-bridge",)
#: what our own board, CI benchmark and step benchmark run: optbench's own plugins, bridges left out
FIRST_PARTY = Selection(distribution="optbench", exclude=BRIDGES)
