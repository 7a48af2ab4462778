"""Aggregates trial rows over seeds: mean and spread per (task, preset, optimizer).

Shared by `optbench results`, the leaderboard and the gate so that all three agree on every number.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

GROUP = ["task", "preset", "optimizer"]
#: columns summarised as mean and standard deviation over the seeds whose status is ok
MEAN_COLUMNS = [
    "final_train_loss", "final_test_loss", "final_test_accuracy", "final_val_loss", "final_val_accuracy",
    "time_to_target_s", "steps_to_target",
    "step_time_ms", "optimizer_step_ms", "sharpness", "hessian_trace", "entropy_gap", "entropy_gap_alpha2",
    "optimizer_state_mb", "wall_time_s",
]


def summarize(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, preset, optimizer): seed counts by status, mean/std of every MEAN_COLUMN over
    ok seeds, how many seeds reached the target, and the step-time ratio to adamw in the same run."""
    if trials.empty:
        return pd.DataFrame(columns=[*GROUP, "seeds", "ok"])
    trials = trials.copy()
    trials["ok"] = trials["status"] == "ok"
    rows: list[dict[str, Any]] = []
    for key, grp in trials.groupby(GROUP, sort=True):
        ok = grp[grp["ok"]]
        out: dict[str, Any] = dict(zip(GROUP, key, strict=True))
        out["skipped"] = int((grp["status"] == "skipped").sum())  # not applicable: not a seed that ran
        out["seeds"] = len(grp) - out["skipped"]
        out["ok"] = int(grp["ok"].sum())
        for status in ("diverged", "failed", "timeout"):
            out[status] = int((grp["status"] == status).sum())
        out["dataset"] = ", ".join(sorted(set(grp["dataset"].dropna())))
        out["synthetic"] = bool(grp["synthetic"].fillna(False).any())
        out["reached"] = int(ok["steps_to_target"].notna().sum())
        for col in MEAN_COLUMNS:
            vals = pd.to_numeric(ok[col], errors="coerce").dropna()
            out[f"{col}_mean"] = float(vals.mean()) if len(vals) else math.nan
            out[f"{col}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else (0.0 if len(vals) else math.nan)
        out["errors"] = "; ".join(sorted(set(grp.loc[~grp["ok"], "error"].dropna().astype(str))))[:500]
        out["applicable"] = out["seeds"] > 0
        rows.append(out)
    table = pd.DataFrame(rows)
    return add_step_time_ratio(trials, table)


def add_step_time_ratio(trials: pd.DataFrame, table: pd.DataFrame, baseline: str = "adamw") -> pd.DataFrame:
    """Step time divided by the baseline's step time from the same run_id and task/preset, per seed,
    then averaged: the only speed figure that is comparable across machines."""
    ok = trials[trials["status"] == "ok"]
    base = ok[ok["optimizer"] == baseline][["run_id", "task", "preset", "seed", "optimizer_step_ms", "step_time_ms"]]
    merged = ok.merge(base, on=["run_id", "task", "preset", "seed"], suffixes=("", "_base"))
    merged["step_ratio"] = merged["step_time_ms"] / merged["step_time_ms_base"]
    merged["opt_step_ratio"] = merged["optimizer_step_ms"] / merged["optimizer_step_ms_base"]
    agg = merged.groupby(GROUP)[["step_ratio", "opt_step_ratio"]].mean().reset_index()
    agg = agg.rename(columns={"step_ratio": "step_time_ratio", "opt_step_ratio": "optimizer_step_ratio"})
    return table.merge(agg, on=GROUP, how="left")


def fmt_mean_std(mean: float, std: float, digits: int = 4) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if std is None or (isinstance(std, float) and math.isnan(std)) or std == 0:
        return f"{mean:.{digits}g}"
    return f"{mean:.{digits}g} ± {std:.2g}"
