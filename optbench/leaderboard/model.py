"""What the pages show, computed once from the Parquet results: the per-seed summary (optbench.summary, the
same numbers `optbench results` and the gate print), per-task ranks, the performance profile and the
ranking across tasks, plus the provenance (machine, dates) every page states.

A ranking compares optimizers, so it needs one configuration per (task, preset, optimizer): a *view* picks it.
- "tuned": each optimizer's configuration selected by a tuning study (`optbench tune`), reported on the study's
  fresh seeds. The default view whenever the results hold any.
- "defaults": each optimizer at its authors' default hyperparameters, untuned. Shown on its own clearly labelled
  page next to a tuned board, and as the only board when nothing was tuned (and then labelled untuned).
Every other configuration (grids, study search trials) stays visible on the task pages and in the
learning-rate sensitivity plots.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optbench.leaderboard import profile
from optbench.leaderboard.uncertainty import score_intervals, tie_positions
from optbench.store import ReadProblem, Store
from optbench.summary import GROUP, metric_columns, summarize, with_configs

TUNED, DEFAULTS = "tuned", "defaults"


@dataclass
class Board:
    trials: pd.DataFrame
    curves: pd.DataFrame
    summary: pd.DataFrame  # summarize() output, one cell per (task, preset, optimizer) of `view`, plus ranks
    read_problems: list[ReadProblem]
    registry: Any = None  # optbench.registry.Registry, when one could be loaded
    built_at: str = ""
    ratios: pd.DataFrame = field(default_factory=pd.DataFrame)  # problem x optimizer performance ratios
    ranking: pd.DataFrame = field(default_factory=pd.DataFrame)
    studies: list[Any] = field(default_factory=list)  # optbench.studies.Study: questions the board answers
    #: synthetic-data (diagnostic) tasks, ranked apart from the headline ranking of real-data tasks
    diagnostics_ratios: pd.DataFrame = field(default_factory=pd.DataFrame)
    diagnostics_ranking: pd.DataFrame = field(default_factory=pd.DataFrame)
    only_synthetic: bool = False  # no real-data task in these results: the only ranking is diagnostic
    view: str = DEFAULTS  # which configuration of each optimizer the ranking uses (see the module docstring)
    configs: pd.DataFrame = field(default_factory=pd.DataFrame)  # every configuration's cell (no search trials)
    search: pd.DataFrame = field(default_factory=pd.DataFrame)  # every cell, tuning search trials included
    untuned: Board | None = None  # the defaults view, when `view` is tuned
    all_trials: pd.DataFrame | None = None  # every trial read, whichever view (failures, geometry)
    #: the metric columns to show (declared in the Parquet files by the metric plugins; summary.metric_columns)
    columns: tuple[Any, ...] = ()
    #: what the plugins recorded about themselves in the Parquet files, {kind: {name: facts}}
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.trials.empty

    @property
    def everything(self) -> pd.DataFrame:
        """Every trial read, whatever the view (search trials included)."""
        return self.all_trials if self.all_trials is not None else self.trials

    def _memo(self, name: str, sources: tuple[Any, ...], compute: Any) -> Any:
        """`compute()` once per set of `sources`: pages ask for these per optimizer and per figure, and each
        answer is a pass over every trial (sources are checked by identity, so a replaced table recomputes)."""
        memo = self.__dict__.setdefault("_memo_store", {})
        hit = memo.get(name)
        if hit is None or any(a is not b for a, b in zip(hit[0], sources, strict=True)):
            hit = memo[name] = (sources, compute())
        return hit[1]

    @property
    def tasks(self) -> list[str]:
        return self._memo("tasks", (self.everything,), lambda: sorted(self.everything["task"].dropna().unique()))

    @property
    def optimizers(self) -> list[str]:
        return self._memo("optimizers", (self.everything,),
                          lambda: sorted(self.everything["optimizer"].dropna().astype(str).unique()))

    @property
    def problems(self) -> list[str]:
        return sorted(self.summary["problem"].unique()) if not self.summary.empty else []

    def trials_of(self, optimizer: str) -> pd.DataFrame:
        """Every trial of one optimizer (search trials included), split once for all optimizer pages: a mask
        over every trial per page made the build grow with optimizers x trials."""
        everything = self.everything
        groups = self._memo("by_optimizer", (everything,), lambda: dict(iter(
            everything.groupby(everything["optimizer"].astype(str), sort=False))) if not everything.empty else {})
        return groups.get(optimizer, everything.iloc[:0])

    def color(self, optimizer: str) -> str:
        """The board's top ten (by the ranking) keep one distinct colour on every page; the rest are grey, and a
        figure that shows one of them gives it a free colour of its own (plots.figure_colors)."""
        from optbench.leaderboard.plots import GREY, HIGHLIGHT

        def top() -> list[str]:
            return (list(self.ranking["optimizer"]) if not self.ranking.empty else self.optimizers)[: len(HIGHLIGHT)]

        top_ten = self._memo("top", (self.ranking, self.everything), top)
        return HIGHLIGHT[top_ten.index(optimizer)] if optimizer in top_ten else GREY

    def provenance(self) -> dict[str, Any]:
        t = self.trials
        started = pd.to_datetime(t["started_at"], errors="coerce", utc=True).dropna() if not t.empty else []
        dates = sorted({d.date().isoformat() for d in started})
        return {
            "devices": t["device"].dropna().value_counts().to_dict() if not t.empty else {},
            "dates": dates,
            "commits": sorted({str(c)[:10] for c in t["git_commit"].dropna()}) if not t.empty else [],
            "torch": sorted(set(t["torch_version"].dropna())) if not t.empty else [],
            "built_at": self.built_at,
        }

    def optimizer_info(self, name: str) -> dict[str, Any]:
        """Plugin, paper, summary and defaults as recorded with the results (so the same Parquet renders the
        same everywhere); for files written before plugins were recorded, the installed registry, else the
        rows' hyperparameters."""
        rows = self.trials_of(name)
        info: dict[str, Any] = {"name": name, "source": "results", "summary": None, "paper": None,
                                "defaults": None, "needs": None}
        info["plugin"] = ", ".join(sorted(set(rows["plugin"].dropna().astype(str)))) or None
        info["plugin_version"] = ", ".join(sorted(set(rows["plugin_version"].dropna().astype(str)))) or None
        info["hparams"] = sorted(set(rows["hparams"].dropna().astype(str)))
        entry = None
        recorded = self.plugins.get("optimizer", {}).get(name)
        if recorded is None and self.registry is not None:
            entry = self.registry.entries.get("optimizer", {}).get(name)
        if recorded is not None:
            info.update(source="recorded", summary=recorded.get("summary"), paper=recorded.get("paper"),
                        defaults=recorded.get("defaults"), needs=recorded.get("needs"),
                        entry_point=recorded.get("entry_point"), plugin=recorded.get("distribution"),
                        plugin_version=recorded.get("version"))
        elif entry is not None:
            spec = entry.spec
            info.update(source="registry", summary=spec.summary, paper=spec.paper, defaults=dict(spec.defaults),
                        needs=getattr(spec.needs, "value", spec.needs), entry_point=entry.plugin,
                        plugin=entry.distribution, plugin_version=entry.version)
        elif info["hparams"]:
            try:
                info["defaults"] = json.loads(info["hparams"][0])
            except ValueError:
                info["defaults"] = None
        return info

    def task_info(self, name: str) -> dict[str, Any]:
        recorded = self.plugins.get("task", {}).get(name)
        if recorded is not None:
            return {"summary": recorded.get("summary"), "paper": recorded.get("paper")}
        entry = self.registry.entries.get("task", {}).get(name) if self.registry is not None else None
        if entry is None:
            return {"summary": None, "paper": None}
        return {"summary": entry.spec.summary, "paper": getattr(entry.spec, "paper", None)}



def problem_key(task: str, preset: str) -> str:
    return f"{task}/{preset}"


def quality_key(row: pd.Series) -> float:
    """Lower is better: accuracy (negated) when the task has one, else the test loss; missing is worst."""
    acc = row.get("final_test_accuracy_mean")
    if acc is not None and not (isinstance(acc, float) and math.isnan(acc)):
        return -float(acc)
    loss = row.get("final_test_loss_mean")
    return math.inf if loss is None or (isinstance(loss, float) and math.isnan(loss)) else float(loss)


def profile_time(row: pd.Series) -> float:
    """Time-to-target used by the profile: the mean over seeds, counted only when EVERY seed reached the target
    (a failed, diverged or slow seed makes it inf), so an optimizer cannot win on its lucky seeds."""
    if row["seeds"] > 0 and row["reached"] == row["seeds"]:
        t = row["time_to_target_s_mean"]
        return float(t) if t is not None and not math.isnan(t) else math.inf
    return math.inf


def add_ranks(summary: pd.DataFrame) -> pd.DataFrame:
    """Within each task/preset: rank by time-to-target (all seeds), then final quality; no ok seed ranks last."""
    if summary.empty:
        return summary.assign(problem=[], profile_time=[], rank=[])
    s = summary.copy()
    s["problem"] = [problem_key(t, p) for t, p in zip(s["task"], s["preset"], strict=True)]
    s["profile_time"] = s.apply(profile_time, axis=1)
    s["_quality"] = s.apply(quality_key, axis=1)
    s["_dead"] = s["ok"] == 0
    s = s.sort_values(["problem", "_dead", "profile_time", "_quality", "optimizer"])
    s["rank"] = s.groupby("problem").cumcount() + 1
    return s.drop(columns=["_quality", "_dead"]).reset_index(drop=True)


def overall_ranking(summary: pd.DataFrame, trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Performance ratios (problem x optimizer) and one ranking row per optimizer, best first."""
    if summary.empty:
        return pd.DataFrame(), pd.DataFrame()
    if "applicable" in summary:  # a not-applicable cell (every trial skipped) is not run, not lost
        summary = summary[summary["applicable"].astype(bool)]
        trials = trials[trials["status"] != "skipped"]
    times = summary.pivot(index="problem", columns="optimizer", values="profile_time")  # missing cell: not run
    ratios = profile.performance_ratios(times)
    area = profile.profile_area(ratios)
    score = profile.profile_score(ratios)
    rows = []
    for opt in ratios.columns:
        mine = summary[summary["optimizer"] == opt]
        t = trials[trials["optimizer"] == opt]
        col = ratios[opt]
        rows.append({
            "optimizer": opt,
            "score": float(score[opt]),
            "area": float(area[opt]),
            "won": int((col == 1.0).sum()),
            "reached": int(np.isfinite(col).sum()),
            "problems": len(col),
            "ran": int(len(mine)),
            "mean_rank": float(mine["rank"].mean()) if len(mine) else math.nan,
            "step_time_ratio": float(pd.to_numeric(mine["step_time_ratio"], errors="coerce").median())
            if "step_time_ratio" in mine and pd.to_numeric(mine["step_time_ratio"], errors="coerce").notna().any()
            else math.nan,
            "trials": int(len(t)),
            "ok": int((t["status"] == "ok").sum()),
            "not_ok": int((t["status"] != "ok").sum()),
            "synthetic": bool(mine["synthetic"].any()),
        })
    ranking = pd.DataFrame(rows).sort_values(["score", "mean_rank", "optimizer"], ascending=[False, True, True])
    ranking["position"] = tie_positions(ranking["score"])  # equal scores share a position: a tie is a tie
    ranking["tied"] = ranking["position"].duplicated(keep=False)
    with_problem = trials.assign(problem=[problem_key(t, p) for t, p in zip(trials["task"], trials["preset"],
                                                                               strict=True)])
    ci = score_intervals(with_problem, list(ratios.index), list(ratios.columns))
    ranking = ranking.merge(ci, on="optimizer", how="left")
    return ratios, ranking.reset_index(drop=True)


def view_cells(configs: pd.DataFrame, view: str) -> pd.DataFrame:
    """One cell per (task, preset, optimizer): its tuned (study-selected) configuration, or its defaults."""
    if configs.empty:
        return configs
    if view == TUNED:
        picked = configs[configs["tuned"].astype(bool)]
        # two studies of one optimizer on one task: the most recent study's choice (names sort by date)
        picked = picked.sort_values("study").groupby(["task", "preset", "optimizer"], sort=False).tail(1)
    else:  # the defaults; an optimizer run in one other configuration only is shown in that one (named), unless
        # that configuration is a study's choice: tuned numbers never stand in for untuned ones
        is_default = configs["config"].astype(str) == configs["optimizer"].astype(str)
        n_configs = configs.groupby(["task", "preset", "optimizer"])["config_id"].transform("size")
        has_default = is_default.groupby([configs["task"], configs["preset"], configs["optimizer"]]).transform("any")
        tuned = configs["tuned"].astype(bool) if "tuned" in configs else False
        picked = configs[is_default | ((n_configs == 1) & ~has_default & ~tuned)]
    return picked.reset_index(drop=True)


def view_trials(trials: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """The trials behind `cells` (search trials never, as in summarize())."""
    keys = set(map(tuple, cells[GROUP].astype(str).to_numpy())) if not cells.empty else set()
    if trials.empty or not keys:
        return trials.iloc[0:0]
    t = trials[trials["study_role"].fillna("") != "search"]
    mask = [tuple(k) in keys for k in t[GROUP].astype(str).to_numpy()]
    return t[mask]


def _board(trials: pd.DataFrame, curves: pd.DataFrame, configs: pd.DataFrame, search: pd.DataFrame, view: str,
           problems: list[ReadProblem], registry: Any, built: str) -> Board:
    cells = view_cells(configs, view)
    mine = view_trials(trials, cells)
    summary = add_ranks(cells)
    # the headline ranking uses real-data tasks only; synthetic (diagnostic) tasks are ranked apart
    synthetic = summary["synthetic"].fillna(False).astype(bool) if not summary.empty else pd.Series(dtype=bool)
    syn_trials = mine["synthetic"].fillna(False).astype(bool) if not mine.empty else pd.Series(dtype=bool)
    only_synthetic = not summary.empty and bool(synthetic.all())
    if only_synthetic:  # nothing real to rank: the diagnostics are the only ranking, and the pages say so
        ratios, ranking = overall_ranking(summary, mine)
        diag_ratios, diag_ranking = pd.DataFrame(), pd.DataFrame()
    else:
        ratios, ranking = overall_ranking(summary[~synthetic], mine[~syn_trials])
        diag_ratios, diag_ranking = overall_ranking(summary[synthetic], mine[syn_trials])
    return Board(mine, curves, summary, problems, registry, built, ratios, ranking, view=view, configs=configs,
                 search=search, all_trials=trials, diagnostics_ratios=diag_ratios, diagnostics_ranking=diag_ranking,
                 only_synthetic=only_synthetic)


def load_board(results: str | Path, registry: Any = None) -> Board:
    """Read a results root (bad files are listed, not fatal) and derive everything the pages need: the tuned
    board when anything was tuned (with the untuned defaults attached as `untuned`), else the defaults board."""
    res = Store(results).read(with_curves=True, on_bad="skip")
    defaults = None
    if registry is not None:
        defaults = {n: dict(r.spec.defaults) for n, r in registry.entries.get("optimizer", {}).items()}
    trials = with_configs(res.trials, defaults)
    trials["optimizer"] = trials["optimizer"].astype(str)
    curves = res.curves if res.curves is not None else pd.DataFrame(columns=["trial_id"])
    columns = metric_columns(trials, res.columns)
    configs = summarize(trials, columns=columns)
    search = summarize(trials, include_search=True, columns=columns)
    built = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    problems = list(res.problems)
    tuned = not configs.empty and bool(configs["tuned"].astype(bool).any())
    untuned = _board(trials, curves, configs, search, DEFAULTS, problems, registry, built)
    untuned.columns, untuned.plugins = columns, res.plugins
    if not tuned:
        return untuned
    board = _board(trials, curves, configs, search, TUNED, problems, registry, built)
    board.untuned = untuned
    board.columns, board.plugins = columns, res.plugins
    return board
