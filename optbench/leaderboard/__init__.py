"""The leaderboard: a static site rendered from Parquet results (overview with a performance profile, one
page per task and per optimizer, training curves, geometry view). It reads results only through
optbench.store and aggregates only through optbench.summary, so its numbers match `optbench results`.
"""

from optbench.leaderboard.site import build_site

__all__ = ["build_site"]
