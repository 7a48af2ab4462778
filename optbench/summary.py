"""Aggregates trial rows over seeds: mean and spread per cell = (task, preset, optimizer, configuration).

Shared by `optbench results`, `results --json`, the leaderboard and the gate so that all of them agree on
every number and on what a cell is: seeds aggregate only inside one configuration (optbench/config.py).
Rows written before configurations were recorded get `config_id`/`config` derived from their `hparams`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from optbench.config import CONSTANT, config_id, config_label
from optbench.schema import CORE_COLUMNS
from optbench.settings import speed_reference
from optbench.specs import ColumnSpec

#: what a cell is; every consumer groups by exactly this
GROUP = ["task", "preset", "optimizer", "config_id"]
#: core columns summarised as mean and standard deviation over the seeds whose status is ok; every metric
#: column (declared by a metric plugin, see metric_columns) is summarised the same way
MEAN_COLUMNS = [
    "final_train_loss", "final_val_loss", "final_val_accuracy", "final_test_loss", "final_test_accuracy",
    "time_to_target_s", "steps_to_target", "step_time_ms", "optimizer_step_ms", "optimizer_state_mb", "wall_time_s",
]
#: interleaved step-time ratio and its interval (optbench/speed.py): per cell, the median over ok seeds
SPEED_COLUMNS = ["opt_step_ratio", "opt_step_ratio_lo", "opt_step_ratio_hi"]
#: statuses counted per cell besides ok
STATUSES = ("diverged", "failed", "timeout", "crashed")
#: the core columns summarize() reads; commands that summarise ask the store for these and every metric column
#: (store.Projection.of), so a core column used here and missing from this set would read as absent
#: (tests/test_store_projection.py checks both: the literals of this module, and summaries equal to a full read)
READS = frozenset([*GROUP, "run_id", "seed", "status", "error", "dataset", "synthetic", "config", "schedule",
                   "hparams", "study", "study_role", "config_rank", "selected", "speed_ref", *MEAN_COLUMNS,
                   *SPEED_COLUMNS])


def _json(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def with_configs(trials: pd.DataFrame, defaults: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """`trials` with `config_id` and `config` filled in on every row. Rows that lack them (written before
    configurations were recorded) get them from `hparams` and `schedule`: the id exactly as the runner computes
    it; the label against `defaults[optimizer]` when given, else against the values shared by all of that
    optimizer's configurations in `trials` (one configuration: the bare name)."""
    t = trials.copy()
    for col in ("config_id", "config", "schedule", "study", "study_role"):
        if col not in t.columns:
            t[col] = None
    if t.empty:
        return t
    missing = t["config_id"].isna() | (t["config_id"].astype(str) == "")
    if missing.any():
        sub = t[missing]
        hps = [_json(h) for h in sub["hparams"]]
        scheds = [_json(s) or dict(CONSTANT) for s in sub["schedule"]]
        t.loc[missing, "config_id"] = [config_id(o, h, s) for o, h, s in zip(sub["optimizer"], hps, scheds,
                                                                              strict=True)]
    unlabelled = t["config"].isna() | (t["config"].astype(str) == "")
    if unlabelled.any():
        labels: dict[str, str] = {}
        for opt, grp in t[unlabelled].groupby("optimizer", sort=False):
            firsts = grp.drop_duplicates("config_id")
            hps = [_json(h) for h in firsts["hparams"]]
            ref = dict(defaults[opt]) if defaults is not None and opt in defaults else _shared(hps)
            for cid, hp, sched in zip(firsts["config_id"], hps, firsts["schedule"], strict=True):
                labels[cid] = config_label(str(opt), hp, _json(sched), ref)
        t.loc[unlabelled, "config"] = [labels[c] for c in t.loc[unlabelled, "config_id"]]
    return t


def metric_columns(trials: pd.DataFrame, declared: Sequence[ColumnSpec] = ()) -> tuple[ColumnSpec, ...]:
    """The numeric metric columns of `trials`: the declared ones it holds, in order, then any other numeric
    column outside the core (a file written before declarations were recorded), under its own name."""
    out = [c for c in declared if c.name in trials.columns and c.dtype in ("float64", "int64")]
    known = CORE_COLUMNS | {c.name for c in declared}
    for name in trials.columns:
        if name not in known and pd.api.types.is_numeric_dtype(trials[name]) and \
                not pd.api.types.is_bool_dtype(trials[name]):
            out.append(ColumnSpec(name))
    return tuple(out)


def _shared(hparams: list[dict[str, Any]]) -> dict[str, Any]:
    """The key/values every configuration has in common: what a derived label leaves out."""
    if not hparams:
        return {}
    common = dict(hparams[0])
    for hp in hparams[1:]:
        common = {k: v for k, v in common.items() if k in hp and hp[k] == v}
    return common


def summarize(trials: pd.DataFrame, include_search: bool = False,
              defaults: Mapping[str, Mapping[str, Any]] | None = None,
              columns: Sequence[ColumnSpec] = ()) -> pd.DataFrame:
    """One row per cell (GROUP): seed counts by status, mean/std over ok seeds of every MEAN_COLUMN and every
    metric column (`columns` declared, plus undeclared numeric extras: metric_columns), how many seeds
    reached the target, the step-time ratio to the speed reference in the same run, and the tuning facts (study, the
    configuration's rank, whether it was selected, `tuned` when these are a study's fresh-seed re-runs).

    A tuning study's search trials are left out unless `include_search`: their one seed chose the configuration,
    so averaging it with the fresh seeds would report the selection's luck."""
    trials = with_configs(trials, defaults)
    if not include_search and not trials.empty:
        trials = trials[trials["study_role"].fillna("") != "search"]
    if trials.empty:
        return pd.DataFrame(columns=[*GROUP, "config", "seeds", "ok"])
    means = [*MEAN_COLUMNS, *(c.name for c in metric_columns(trials, columns))]
    trials = trials.copy()
    trials["ok"] = trials["status"] == "ok"
    return add_step_time_ratio(trials, _cells(trials, means))


def _joined(frame: pd.DataFrame, col: str, index: pd.Index, sep: str, empty: Any) -> pd.Series:
    """Per cell: the sorted distinct non-empty strings of `col`, joined (`empty` where there are none)."""
    if col not in frame:
        return pd.Series(empty, index=index, dtype=object)
    vals = frame[[*GROUP, col]].dropna(subset=[col])
    vals = vals.assign(**{col: vals[col].astype(str)})
    vals = vals[vals[col] != ""].drop_duplicates().sort_values(col, kind="stable")
    grouped = vals.groupby(GROUP, sort=True)[col]
    joined = grouped.first().astype(object)  # the one value of most cells, without a Python call per cell
    sizes = grouped.size()
    if (sizes > 1).any():  # only cells with several values are joined one by one
        several = vals.set_index(GROUP).loc[sizes.index[sizes > 1]]
        joined.update(several.groupby(level=GROUP, sort=True)[col].agg(sep.join))
    return joined.reindex(index).astype(object).where(lambda s: s.notna(), empty)


def _cells(trials: pd.DataFrame, means: list[str]) -> pd.DataFrame:
    """One row per cell, computed with group-bys over the whole table (the cost grows with the number of
    trials only through vectorised passes, so 100k trials summarise in about a second)."""
    t = trials
    status = t["status"]
    flags = {"skipped": status == "skipped", "ok": t["ok"], **{s: status == s for s in STATUSES}}
    extra = {f"_n_{k}": v.astype("int64") for k, v in flags.items()}
    extra["_synthetic"] = t["synthetic"].fillna(False).astype(bool) if "synthetic" in t else False
    extra["_tuned"] = (t["study_role"] == "final") if "study_role" in t else False
    extra["_selected"] = t["selected"].fillna(False).astype(bool) if "selected" in t else False
    if "config_rank" in t:
        extra["_rank"] = pd.to_numeric(t["config_rank"], errors="coerce")
    t = t.assign(**extra)
    g = t.groupby(GROUP, sort=True)
    out = g.size().rename("_n").to_frame()
    index = out.index
    firsts = g[[c for c in ("config", "schedule", "hparams") if c in t]].first()
    optimizer = pd.Series(index.get_level_values("optimizer"), index=index)
    out["config"] = firsts["config"].where(firsts["config"].notna(), optimizer).astype(str) \
        if "config" in firsts else optimizer
    for col in ("schedule", "hparams"):
        out[col] = firsts[col].astype(object).where(firsts[col].notna(), None) if col in firsts else None
    counts = g[[f"_n_{k}" for k in flags]].sum()
    out["skipped"] = counts["_n_skipped"]
    out["seeds"] = out["_n"] - out["skipped"]
    out["ok"] = counts["_n_ok"]
    for s in STATUSES:
        out[s] = counts[f"_n_{s}"]
    out["dataset"] = _joined(t, "dataset", index, ", ", "")
    out["synthetic"] = g["_synthetic"].any()
    ok = t[t["ok"]]
    og = ok.groupby(GROUP, sort=True)
    out["reached"] = og["steps_to_target"].count().reindex(index, fill_value=0).astype("int64")
    present = [c for c in means if c in ok]
    numeric = ok[GROUP].join(ok[present].apply(pd.to_numeric, errors="coerce"))
    stats = numeric.groupby(GROUP, sort=True)[present].agg(["mean", "std", "count"]).reindex(index)
    for col in means:
        if col not in present:
            out[f"{col}_mean"] = math.nan
            out[f"{col}_std"] = math.nan
            continue
        n = stats[(col, "count")].fillna(0)
        out[f"{col}_mean"] = stats[(col, "mean")].where(n > 0, math.nan)
        out[f"{col}_std"] = stats[(col, "std")].where(n > 1, 0.0).where(n > 0, math.nan)
    ratios = [c for c in SPEED_COLUMNS if c in ok]  # interleaved step-time ratio (optbench/speed.py)
    if ratios:
        med = ok[GROUP].join(ok[ratios].apply(pd.to_numeric, errors="coerce")).groupby(GROUP, sort=True)[ratios]
        out = out.join(med.median().reindex(index))
    out["speed_ref"] = g["speed_ref"].first() if "speed_ref" in t else None
    errors = _joined(t[~t["ok"]], "error", index, "; ", "")
    out["errors"] = errors.str.slice(0, 500)
    out["applicable"] = out["seeds"] > 0
    out["study"] = _joined(t, "study", index, ", ", None)
    out["tuned"] = g["_tuned"].any()
    out["selected"] = g["_selected"].any()
    if "_rank" in t:
        ranks = g["_rank"].min()
        out["config_rank"] = [None if pd.isna(r) else int(r) for r in ranks]
    else:
        out["config_rank"] = None
    return out.drop(columns="_n").reset_index()


def add_step_time_ratio(trials: pd.DataFrame, table: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Step time divided by the baseline's step time from the same run_id and task/preset, per seed, then
    averaged: the only speed figure that is comparable across machines. Several baseline configurations in one
    run (a grid) give their median step time: its cost per step does not depend on the hyperparameters."""
    baseline = baseline or speed_reference()  # optbench.settings: a setting, not a name the engine knows
    ok = trials[trials["status"] == "ok"]
    keys = ["run_id", "task", "preset", "seed"]
    base = ok[ok["optimizer"] == baseline].groupby(keys)[["optimizer_step_ms", "step_time_ms"]].median().reset_index()
    merged = ok.merge(base, on=keys, suffixes=("", "_base"))
    merged["step_ratio"] = merged["step_time_ms"] / merged["step_time_ms_base"]
    merged["opt_step_ratio"] = merged["optimizer_step_ms"] / merged["optimizer_step_ms_base"]
    agg = merged.groupby(GROUP)[["step_ratio", "opt_step_ratio"]].mean().reset_index()
    agg = agg.rename(columns={"step_ratio": "step_time_ratio", "opt_step_ratio": "optimizer_step_ratio"})
    return table.merge(agg, on=GROUP, how="left")


def cell_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    """A summary row's cell as a tuple in GROUP order."""
    return tuple(str(row[g]) for g in GROUP)


def fmt_mean_std(mean: float, std: float, digits: int = 4) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if std is None or (isinstance(std, float) and math.isnan(std)) or std <= 1e-12 * abs(mean):
        return f"{mean:.{digits}g}"  # no spread, or only float rounding between identical seeds
    return f"{mean:.{digits}g} ± {std:.2g}"
