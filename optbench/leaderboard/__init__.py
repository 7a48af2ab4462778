"""The leaderboard: a static site rendered from Parquet results (overview with a performance profile, one
page per task and per optimizer, training curves, geometry view). It reads results only through
optbench.store and aggregates only through optbench.summary, so its numbers match `optbench results`.

`build_site` is loaded on first use, so importing a submodule (`from optbench.leaderboard import plots`)
does not import the whole site builder: no import cycle through this package.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_site"]


def __getattr__(name: str) -> Any:
    if name == "build_site":
        from optbench.leaderboard.site import build_site

        return build_site
    raise AttributeError(f"module 'optbench.leaderboard' has no attribute {name!r}")
