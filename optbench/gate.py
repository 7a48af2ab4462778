"""The performance-regression gate: compares a candidate results root with a baseline, cell by cell.

A cell is one (task, preset, optimizer, configuration) (summary.GROUP). Every number comes from
`summary.summarize()`, the same function behind `optbench results` and the leaderboard, so the gate never
disagrees with them. Seeds of different configurations are never pooled: a learning-rate change is a new cell.

Why these rules:
- Quality is judged against the seed noise: a candidate is worse only when its mean final metric is
  worse than the baseline's by more than max(k x the seed spread, a relative tolerance), so re-running
  the same optimizer with other seeds passes while a real loss of quality fails.
- Speed is judged on the step-time ratio to the speed reference (optbench.settings) measured in the same
  run, never on milliseconds, so a slower CI machine (everything slower alike) passes while a slower optimizer fails.
- Failed trials and trials that diverge where the baseline did not are regressions; seeds or cells
  missing from the candidate are reported as warnings (a PR may run a subset of the leaderboard).
- A candidate cell the baseline lacks (a new optimizer or configuration) is listed as "new" with its numbers:
  it cannot regress against nothing, and it is never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from optbench.errors import OptbenchError
from optbench.settings import speed_reference
from optbench.store import Store
from optbench.summary import GROUP, cell_key, summarize

PASS, WARNING, REGRESSION, SKIPPED, NEW = "pass", "warning", "regression", "skipped", "new"
_RANK = {PASS: 0, SKIPPED: 0, NEW: 0, WARNING: 1, REGRESSION: 2}


@dataclass(frozen=True)
class Tolerances:
    quality_k: float = 2.0  # how many of the baseline's seed standard deviations a quality drop may be
    quality_tol: float = 0.02  # ... or this fraction of the baseline's value, whichever is larger
    speed_tol: float = 0.25  # how much the step-time ratio to the speed reference may grow (0.25 = 25 %)
    quality_only: bool = False  # judge quality and trial counts only (a baseline from another machine)

    def __post_init__(self) -> None:
        for name in ("quality_k", "quality_tol", "speed_tol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise OptbenchError(f"--{name.replace('_', '-')} must be a finite number >= 0, not {value!r}.")


@dataclass
class Check:
    """One verdict on one aspect (quality, speed, trials) of one cell."""

    kind: str
    status: str
    detail: str


@dataclass
class CellVerdict:
    task: str
    preset: str
    optimizer: str
    config_id: str = ""
    config: str = ""  # the configuration's readable label (optbench/config.py)
    baseline_seeds: str = ""  # "ok/seeds"
    candidate_seeds: str = ""
    metric: str | None = None  # final_test_accuracy or final_test_loss
    higher_is_better: bool = False
    baseline_mean: float | None = None
    baseline_std: float | None = None
    candidate_mean: float | None = None
    candidate_std: float | None = None
    worse_by: float | None = None  # positive = the candidate is worse
    allowed: float | None = None  # max(k * spread, tol * |baseline|)
    baseline_ratio: float | None = None  # step-time ratio to the speed reference
    candidate_ratio: float | None = None
    ratio_growth: float | None = None  # candidate / baseline - 1
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> str:
        if any(c.status == NEW for c in self.checks):
            return NEW
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default=PASS)

    def check(self, kind: str) -> Check | None:
        return next((c for c in self.checks if c.kind == kind), None)


@dataclass
class GateReport:
    baseline: str
    candidate: str
    tolerances: Tolerances
    cells: list[CellVerdict]
    only_baseline: list[tuple[str, ...]] = field(default_factory=list)  # summary.GROUP keys
    only_candidate: list[tuple[str, ...]] = field(default_factory=list)  # also in `cells`, with status "new"
    problems: list[str] = field(default_factory=list)
    labels: dict[tuple[str, ...], str] = field(default_factory=dict)  # cell key -> configuration label

    @property
    def regressions(self) -> list[CellVerdict]:
        return [c for c in self.cells if c.status == REGRESSION]

    @property
    def passed(self) -> bool:
        return not self.regressions

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        cells = []
        for c in self.cells:
            item = asdict(c)
            item["status"] = c.status
            cells.append(_clean(item))
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "tolerances": asdict(self.tolerances),
            "regressions": len(self.regressions),
            "cells": cells,
            "only_baseline": [{**dict(zip(GROUP, k, strict=True)), "config": self.labels.get(k)}
                              for k in self.only_baseline],
            "only_candidate": [{**dict(zip(GROUP, k, strict=True)), "config": self.labels.get(k)}
                               for k in self.only_candidate],
            "problems": list(self.problems),
        }


def _clean(value: Any) -> Any:
    """NaN is not JSON: turn it into null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _choose_metric(base: pd.Series, cand: pd.Series) -> tuple[str | None, bool]:
    """Test accuracy where both sides have it (higher is better), else test loss (lower is better)."""
    for metric, higher in (("final_test_accuracy", True), ("final_test_loss", False)):
        if _num(base.get(f"{metric}_mean")) is not None and _num(cand.get(f"{metric}_mean")) is not None:
            return metric, higher
    return None, False


def _trials_check(cell: CellVerdict, base: pd.Series, cand: pd.Series) -> Check:
    n_base, n_cand = int(base["seeds"]), int(cand["seeds"])
    broke_base = int(base["failed"]) + int(base["timeout"])
    broke_cand = int(cand["failed"]) + int(cand["timeout"])
    div_base, div_cand = int(base["diverged"]), int(cand["diverged"])
    regressions, warnings = [], []
    if broke_cand:
        msg = f"{broke_cand} of {n_cand} candidate trials failed or timed out"
        if cand.get("errors"):
            msg += f" ({cand['errors'][:200]})"
        (warnings if broke_base else regressions).append(msg + (" (so did the baseline's)" if broke_base else ""))
    if div_cand:
        msg = f"{div_cand} of {n_cand} candidate seeds diverged"
        (warnings if div_base else regressions).append(
            msg + (f" (baseline: {div_base} of {n_base})" if div_base else ", none did in the baseline")
        )
    if n_cand < n_base:
        warnings.append(f"missing trials: candidate ran {n_cand} seeds, baseline {n_base}")
    if int(cand["ok"]) == 0 and not regressions:
        # a cell that never worked in the baseline either is a known failure, not a new one
        (warnings if int(base["ok"]) == 0 else regressions).append("no candidate trial finished ok")
    if regressions:
        return Check("trials", REGRESSION, "; ".join(regressions + warnings))
    if warnings:
        return Check("trials", WARNING, "; ".join(warnings))
    return Check("trials", PASS, f"{int(cand['ok'])}/{n_cand} ok")


def _quality_check(cell: CellVerdict, base: pd.Series, cand: pd.Series, tol: Tolerances) -> Check:
    metric, higher = _choose_metric(base, cand)
    if metric is None:
        return Check("quality", SKIPPED, "no final test metric on both sides (no ok trial)")
    b_mean, c_mean = float(base[f"{metric}_mean"]), float(cand[f"{metric}_mean"])
    b_std = _num(base.get(f"{metric}_std")) or 0.0
    c_std = _num(cand.get(f"{metric}_std")) or 0.0
    # the baseline's seed spread is the noise yardstick (a regression that also adds variance must not widen
    # its own tolerance); a one-seed baseline has none, so the candidate's stands in
    spread = b_std if int(base["ok"]) > 1 else c_std
    allowed = max(tol.quality_k * spread, tol.quality_tol * abs(b_mean))
    worse_by = (b_mean - c_mean) if higher else (c_mean - b_mean)
    cell.metric, cell.higher_is_better = metric, higher
    cell.baseline_mean, cell.baseline_std, cell.candidate_mean, cell.candidate_std = b_mean, b_std, c_mean, c_std
    cell.worse_by, cell.allowed = worse_by, allowed
    name = metric.removeprefix("final_").replace("_", " ")
    direction = "lower" if higher else "higher"
    if worse_by > allowed:
        return Check("quality", REGRESSION, f"{name} {worse_by:.3g} {direction} than baseline (allowed {allowed:.3g})")
    return Check("quality", PASS, f"{name} within {allowed:.3g} of baseline")


def _interval_speed_check(cell: CellVerdict, base: pd.Series, cand: pd.Series, tol: Tolerances) -> Check | None:
    """The interleaved ratio (optbench/speed.py) where both sides have it: slower only when even the
    candidate's lower bound lies more than the tolerance above the baseline's upper bound."""
    from optbench.speed import is_slower

    b = tuple(_num(base.get(c)) for c in ("opt_step_ratio", "opt_step_ratio_lo", "opt_step_ratio_hi"))
    c = tuple(_num(cand.get(c)) for c in ("opt_step_ratio", "opt_step_ratio_lo", "opt_step_ratio_hi"))
    ref = speed_reference()
    if any(x is None for x in (*b, *c)) or base.get("speed_ref") != ref or cand.get("speed_ref") != ref:
        return None
    cell.baseline_ratio, cell.candidate_ratio = b[0], c[0]
    cell.ratio_growth = c[0] / b[0] - 1 if b[0] else None
    text = f"step ×{ref} {b[0]:.2f} [{b[1]:.2f}–{b[2]:.2f}] → {c[0]:.2f} [{c[1]:.2f}–{c[2]:.2f}]"
    if is_slower(c, b, tol.speed_tol):
        return Check("speed", REGRESSION, f"{text}: slower beyond the intervals (allowed +{tol.speed_tol:.0%})")
    return Check("speed", PASS, f"{text} (interleaved, intervals overlap or within +{tol.speed_tol:.0%})")


def _speed_check(cell: CellVerdict, base: pd.Series, cand: pd.Series, tol: Tolerances) -> Check:
    interval = _interval_speed_check(cell, base, cand, tol)
    if interval is not None:
        return interval
    b, c = _num(base.get("step_time_ratio")), _num(cand.get("step_time_ratio"))
    cell.baseline_ratio, cell.candidate_ratio = b, c
    if b is None or c is None:
        side = "baseline" if b is None else "candidate"
        return Check("speed", SKIPPED, f"no ok {speed_reference()} trial in the same run of the {side} to compare with")
    growth = c / b - 1 if b > 0 else math.inf
    cell.ratio_growth = growth
    if growth > tol.speed_tol:
        return Check("speed", REGRESSION, f"step time ×{speed_reference()} grew {growth:+.0%} ({b:.2f} → {c:.2f}; "
                     f"allowed +{tol.speed_tol:.0%})")
    return Check("speed", PASS, f"step time ×{speed_reference()} {b:.2f} → {c:.2f} ({growth:+.0%})")


def compare(baseline: pd.DataFrame, candidate: pd.DataFrame, tol: Tolerances | None = None,
            baseline_name: str = "baseline", candidate_name: str = "candidate") -> GateReport:
    """Compare two trials tables (as Store.read gives them). Raises OptbenchError when no cell overlaps."""
    tol = tol or Tolerances()
    # a skipped (not applicable) trial is neither a pass nor a failure: the gate does not see it
    baseline, candidate = (t[t["status"] != "skipped"] if "status" in t else t for t in (baseline, candidate))
    base_sum, cand_sum = summarize(baseline), summarize(candidate)
    if base_sum.empty:
        raise OptbenchError(f"the baseline {baseline_name} has no trials.", "Point --baseline at a results root.")
    if cand_sum.empty:
        raise OptbenchError(f"the candidate {candidate_name} has no trials.", "Point --candidate at a results root.")
    base_idx = {cell_key(r): r for _, r in base_sum.iterrows()}
    cand_idx = {cell_key(r): r for _, r in cand_sum.iterrows()}
    labels = {k: str(r["config"]) for k, r in [*base_idx.items(), *cand_idx.items()]}
    shared = sorted(set(base_idx) & set(cand_idx))
    new = sorted(set(cand_idx) - set(base_idx))
    if not shared:
        raise OptbenchError(
            f"no (task, preset, optimizer, configuration) appears in both {baseline_name} and {candidate_name}.",
            "Run the candidate on the baseline's tasks, preset, optimizers and hyperparameters "
            "(see `optbench results`).",
        )
    cells = []
    for key in sorted(shared + new):
        b, c = base_idx.get(key), cand_idx[key]
        cell = CellVerdict(*key, config=labels[key], baseline_seeds=f"{int(b['ok'])}/{int(b['seeds'])}" if b is not None
                           else "—", candidate_seeds=f"{int(c['ok'])}/{int(c['seeds'])}")
        if b is None:
            _new_cell(cell, c)
        else:
            speed = (Check("speed", SKIPPED, "speed not compared (--quality-only: the baseline ran elsewhere)")
                     if tol.quality_only else _speed_check(cell, b, c, tol))
            cell.checks = [_quality_check(cell, b, c, tol), speed, _trials_check(cell, b, c)]
        cells.append(cell)
    return GateReport(
        baseline=baseline_name, candidate=candidate_name, tolerances=tol, cells=cells,
        only_baseline=sorted(set(base_idx) - set(cand_idx)), only_candidate=new, labels=labels,
    )


def _new_cell(cell: CellVerdict, cand: pd.Series) -> None:
    """A cell only the candidate has: its own numbers, nothing to compare them with."""
    metric, higher = _choose_metric(cand, cand)
    if metric is not None:
        cell.metric, cell.higher_is_better = metric, higher
        cell.candidate_mean = _num(cand.get(f"{metric}_mean"))
        cell.candidate_std = _num(cand.get(f"{metric}_std"))
    cell.candidate_ratio = _num(cand.get("step_time_ratio"))
    cell.checks = [Check("baseline", NEW, "new: not in the baseline (nothing to compare with)")]


def _read(root: str | Path, role: str, skip_bad: bool) -> tuple[pd.DataFrame, list[str]]:
    store = Store(root)
    if not store.exists():
        raise OptbenchError(f"the {role} results directory {root} does not exist or is not a directory.",
                            f"Pass --{role} a results root written by `optbench run`.")
    if not store.has_layout():
        raise OptbenchError(f"{root} has no trials/ folder, so it is not an optbench results root.",
                            f"Pass --{role} the directory given to `optbench run --results`.")
    try:
        res = store.read(on_bad="skip" if skip_bad else "raise")
    except PermissionError as exc:
        raise OptbenchError(f"cannot read the {role} results under {root}: {exc.strerror}.",
                            "Check the directory's permissions.") from None
    return res.trials, [f"{role}: {p}" for p in res.problems]


def run_gate(baseline: str | Path, candidate: str | Path, tol: Tolerances | None = None,
             skip_bad: bool = False, tasks: list[str] | None = None) -> GateReport:
    """Read both results roots and compare them (only `tasks`, if given); unusable input raises
    OptbenchError (exit 2)."""
    base_trials, base_problems = _read(baseline, "baseline", skip_bad)
    cand_trials, cand_problems = _read(candidate, "candidate", skip_bad)
    if tasks:
        base_trials = base_trials[base_trials["task"].isin(tasks)]
        cand_trials = cand_trials[cand_trials["task"].isin(tasks)]
    report = compare(base_trials, cand_trials, tol, str(baseline), str(candidate))
    report.problems = base_problems + cand_problems
    return report


# --- Markdown (for $GITHUB_STEP_SUMMARY) ----------------------------------------------------------
_ICON = {PASS: "✅", WARNING: "⚠️", REGRESSION: "❌", SKIPPED: "➖", NEW: "🆕"}


def fmt_value(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.4g}" if not std else f"{mean:.4g} ± {std:.2g}"


def fmt_ratio(cell: CellVerdict) -> str:
    if cell.baseline_ratio is None and cell.candidate_ratio is not None:
        return f"{cell.candidate_ratio:.2f}"
    if cell.baseline_ratio is None or cell.candidate_ratio is None:
        return "—"
    return f"{cell.baseline_ratio:.2f} → {cell.candidate_ratio:.2f} ({cell.ratio_growth:+.0%})"


def notes(cell: CellVerdict) -> str:
    """What a reader must see: regressions and warnings; 'skipped' reasons only when nothing else is said."""
    loud = [c.detail for c in cell.checks if c.status in (REGRESSION, WARNING, NEW)]
    return "; ".join(loud or [c.detail for c in cell.checks if c.status == SKIPPED])


def cell_name(report: GateReport, key: tuple[str, ...]) -> str:
    """task/preset:configuration label."""
    return f"{key[0]}/{key[1]}:{report.labels.get(key, key[2])}"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def to_markdown(report: GateReport) -> str:
    tol = report.tolerances
    n_reg = len(report.regressions)
    head = "✅ **optbench gate passed**" if report.passed else f"❌ **optbench gate failed: {n_reg} regression(s)**"
    lines = [
        "## optbench performance gate", "",
        f"{head}: {len(report.cells)} cell(s) compared, baseline `{_md_escape(report.baseline)}`, "
        f"candidate `{_md_escape(report.candidate)}`.", "",
        f"Quality may drop by max({tol.quality_k:g} × baseline seed std, {tol.quality_tol:.0%} of the baseline); "
        f"the step-time ratio to `{speed_reference()}` (same run) may grow by {tol.speed_tol:.0%}.", "",
        "| task | optimizer | seeds ok (base → cand) | metric | baseline | candidate | worse by (allowed) "
        f"| step time ×{speed_reference()} | verdict | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report.cells:
        metric = c.metric.removeprefix("final_").replace("_", " ") if c.metric else "—"
        worse = "—" if c.worse_by is None else f"{c.worse_by:.3g} ({c.allowed:.3g})"
        lines.append(
            f"| {_md_escape(c.task)}/{_md_escape(c.preset)} | {_md_escape(c.config or c.optimizer)} | "
            f"{c.baseline_seeds} → {c.candidate_seeds} | {metric} | {fmt_value(c.baseline_mean, c.baseline_std)} | "
            f"{fmt_value(c.candidate_mean, c.candidate_std)} | {worse} | {fmt_ratio(c)} | "
            f"{_ICON[c.status]} {c.status} | {_md_escape(notes(c))} |"
        )
    if report.only_baseline:
        lines += ["", f"⚠️ {len(report.only_baseline)} baseline cell(s) not run by the candidate: "
                  + ", ".join(f"`{_md_escape(cell_name(report, k))}`" for k in report.only_baseline)]
    if report.only_candidate:
        lines += ["", f"🆕 {len(report.only_candidate)} new cell(s) with no baseline (listed above with their "
                  "numbers): " + ", ".join(f"`{_md_escape(cell_name(report, k))}`" for k in report.only_candidate)]
    if report.problems:
        lines += ["", "Skipped files:"] + [f"- {_md_escape(p)}" for p in report.problems]
    return "\n".join(lines) + "\n"
