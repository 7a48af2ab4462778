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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optbench.errors import OptbenchError
from optbench.schema import merge_columns
from optbench.settings import speed_reference
from optbench.specs import ColumnSpec
from optbench.store import Projection, Store
from optbench.summary import GROUP, READS, summarize

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


def _floats(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column as floats: NaN where it is missing, empty or not a number (the whole column when absent)."""
    if name not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _ints(frame: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(frame[name], errors="coerce").fillna(0).to_numpy(dtype=np.int64)


def _opt(values: np.ndarray) -> list[float | None]:
    """Floats for the verdicts: None where not finite (NaN and infinities are not numbers a reader can use)."""
    return [v if math.isfinite(v) else None for v in values.tolist()]


def _by_cell(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary indexed by its cell (summary.cell_key: GROUP as strings); a repeated cell keeps its last row."""
    index = pd.MultiIndex.from_frame(summary[GROUP].astype(str))
    out = summary.set_axis(index, axis=0)
    return out[~out.index.duplicated(keep="last")]


def _rows(frame: pd.DataFrame, keys: list[tuple[str, ...]]) -> pd.DataFrame:
    return frame.reindex(pd.MultiIndex.from_tuples(keys, names=GROUP)) if keys else frame.iloc[:0]


@dataclass
class _Judged:
    """One quality comparison over every shared cell (arrays aligned with the cells)."""

    worse_by: np.ndarray
    allowed: np.ndarray
    b_std: np.ndarray
    c_std: np.ndarray


def _judge(b_mean: np.ndarray, c_mean: np.ndarray, b_std: np.ndarray, c_std: np.ndarray, b_ok: np.ndarray,
           higher: np.ndarray, tol: Tolerances) -> _Judged:
    """The quality rule for every cell at once: worse by more than max(k x spread, tol x |baseline|) fails.
    The baseline's seed spread is the noise yardstick (a regression that also adds variance must not widen its
    own tolerance); a one-seed baseline has none, so the candidate's stands in."""
    b_std = np.where(np.isfinite(b_std), b_std, 0.0)
    c_std = np.where(np.isfinite(c_std), c_std, 0.0)
    spread = np.where(b_ok > 1, b_std, c_std)
    allowed = np.maximum(tol.quality_k * spread, tol.quality_tol * np.abs(b_mean))
    worse_by = np.where(higher, b_mean - c_mean, c_mean - b_mean)
    return _Judged(worse_by, allowed, b_std, c_std)


def _quality(cells: list[CellVerdict], base: pd.DataFrame, cand: pd.DataFrame, tol: Tolerances) -> list[Check]:
    """Test accuracy where both sides have it (higher is better), else test loss (lower is better)."""
    acc = [_floats(f, "final_test_accuracy_mean") for f in (base, cand)]
    loss = [_floats(f, "final_test_loss_mean") for f in (base, cand)]
    use_acc = np.isfinite(acc[0]) & np.isfinite(acc[1])
    has = use_acc | (np.isfinite(loss[0]) & np.isfinite(loss[1]))
    pick = {side: (np.where(use_acc, acc[i], loss[i]),
                   np.where(use_acc, _floats(f, "final_test_accuracy_std"), _floats(f, "final_test_loss_std")))
            for i, (side, f) in enumerate((("b", base), ("c", cand)))}
    (b_mean, b_std), (c_mean, c_std) = pick["b"], pick["c"]
    j = _judge(b_mean, c_mean, b_std, c_std, _ints(base, "ok"), use_acc, tol)
    regress = has & (j.worse_by > j.allowed)
    checks = []
    for i, cell in enumerate(cells):
        if not has[i]:
            checks.append(Check("quality", SKIPPED, "no final test metric on both sides (no ok trial)"))
            continue
        higher = bool(use_acc[i])
        metric = "final_test_accuracy" if higher else "final_test_loss"
        worse_by, allowed = float(j.worse_by[i]), float(j.allowed[i])
        cell.metric, cell.higher_is_better = metric, higher
        cell.baseline_mean, cell.baseline_std = float(b_mean[i]), float(j.b_std[i])
        cell.candidate_mean, cell.candidate_std = float(c_mean[i]), float(j.c_std[i])
        cell.worse_by, cell.allowed = worse_by, allowed
        name = metric.removeprefix("final_").replace("_", " ")
        if regress[i]:
            direction = "lower" if higher else "higher"
            checks.append(Check("quality", REGRESSION,
                                f"{name} {worse_by:.3g} {direction} than baseline (allowed {allowed:.3g})"))
        else:
            checks.append(Check("quality", PASS, f"{name} within {allowed:.3g} of baseline"))
    return checks


def _columns(cells: list[CellVerdict], base: pd.DataFrame, cand: pd.DataFrame, tol: Tolerances,
             columns: Sequence[ColumnSpec]) -> list[list[Check]]:
    """The quality rule on every declared metric column with a direction (ColumnSpec.better), per cell: one
    check per column both sides measured, a skipped one where only one side did."""
    out: list[list[Check]] = [[] for _ in cells]
    b_ok = _ints(base, "ok")
    for col in columns:
        if col.better not in ("min", "max"):
            continue  # no direction: shown, never judged
        b_mean, c_mean = _floats(base, f"{col.name}_mean"), _floats(cand, f"{col.name}_mean")
        b_has, c_has = np.isfinite(b_mean), np.isfinite(c_mean)
        higher = col.better == "max"
        j = _judge(b_mean, c_mean, _floats(base, f"{col.name}_std"), _floats(cand, f"{col.name}_std"), b_ok,
                   np.full(len(cells), higher), tol)
        regress = b_has & c_has & (j.worse_by > j.allowed)
        kind, direction = f"quality:{col.name}", "lower" if higher else "higher"
        for i in np.flatnonzero(b_has | c_has).tolist():
            if not (b_has[i] and c_has[i]):
                side = "baseline" if b_has[i] else "candidate"
                out[i].append(Check(kind, SKIPPED, f"{col.header} measured by the {side} only"))
            elif regress[i]:
                out[i].append(Check(kind, REGRESSION, f"{col.header} {j.worse_by[i]:.3g} {direction} than baseline "
                                                      f"(allowed {j.allowed[i]:.3g}; better is {col.better})"))
            else:
                out[i].append(Check(kind, PASS, f"{col.header} within {j.allowed[i]:.3g} of baseline"))
    return out


def _speed(cells: list[CellVerdict], base: pd.DataFrame, cand: pd.DataFrame, tol: Tolerances) -> list[Check]:
    """The interleaved ratio (optbench/speed.py) where both sides have it against the current reference: slower
    only when even the candidate's lower bound lies more than the tolerance above the baseline's upper bound.
    Else the same-run step-time ratio, slower when it grew by more than the tolerance."""
    from optbench.speed import slower_mask

    ref = speed_reference()
    if tol.quality_only:
        return [Check("speed", SKIPPED, "speed not compared (--quality-only: the baseline ran elsewhere)")
                for _ in cells]
    names = ("opt_step_ratio", "opt_step_ratio_lo", "opt_step_ratio_hi")
    b = np.stack([_floats(base, c) for c in names]) if len(cells) else np.zeros((3, 0))
    c = np.stack([_floats(cand, c) for c in names]) if len(cells) else np.zeros((3, 0))
    same_ref = [(f["speed_ref"] == ref).to_numpy(dtype=bool) if "speed_ref" in f else np.zeros(len(f), bool)
                for f in (base, cand)]
    interval = np.isfinite(b).all(axis=0) & np.isfinite(c).all(axis=0) & same_ref[0] & same_ref[1]
    slower = slower_mask(c[1], b[2], tol.speed_tol)
    sb, sc = _floats(base, "step_time_ratio"), _floats(cand, "step_time_ratio")
    s_has = np.isfinite(sb) & np.isfinite(sc)
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.where(sb > 0, sc / np.where(sb > 0, sb, 1.0) - 1, math.inf)
    checks = []
    for i, cell in enumerate(cells):
        if interval[i]:
            (b0, b1, b2), (c0, c1, c2) = b[:, i].tolist(), c[:, i].tolist()
            cell.baseline_ratio, cell.candidate_ratio = b0, c0
            cell.ratio_growth = c0 / b0 - 1 if b0 else None
            text = f"step ×{ref} {b0:.2f} [{b1:.2f}–{b2:.2f}] → {c0:.2f} [{c1:.2f}–{c2:.2f}]"
            if slower[i]:
                checks.append(Check("speed", REGRESSION,
                                    f"{text}: slower beyond the intervals (allowed +{tol.speed_tol:.0%})"))
            else:
                checks.append(Check("speed", PASS,
                                    f"{text} (interleaved, intervals overlap or within +{tol.speed_tol:.0%})"))
            continue
        bi, ci = float(sb[i]), float(sc[i])
        cell.baseline_ratio = bi if math.isfinite(bi) else None
        cell.candidate_ratio = ci if math.isfinite(ci) else None
        if not s_has[i]:
            side = "baseline" if cell.baseline_ratio is None else "candidate"
            checks.append(Check("speed", SKIPPED, f"no ok {ref} trial in the same run of the {side} to compare with"))
            continue
        g = float(growth[i])
        cell.ratio_growth = g
        if g > tol.speed_tol:
            checks.append(Check("speed", REGRESSION, f"step time ×{ref} grew {g:+.0%} ({bi:.2f} → {ci:.2f}; "
                                                     f"allowed +{tol.speed_tol:.0%})"))
        else:
            checks.append(Check("speed", PASS, f"step time ×{ref} {bi:.2f} → {ci:.2f} ({g:+.0%})"))
    return checks


def _trials(base: pd.DataFrame, cand: pd.DataFrame) -> list[Check]:
    """Failed trials and seeds that diverge where the baseline's did not are regressions; the same trouble in
    the baseline, or seeds the candidate did not run, are warnings; a cell that never worked in the baseline
    either is a known failure, not a new one."""
    n_base, n_cand, ok_base, ok_cand = (_ints(f, c) for f, c in ((base, "seeds"), (cand, "seeds"), (base, "ok"),
                                                                 (cand, "ok")))
    broke_base = _ints(base, "failed") + _ints(base, "timeout")
    broke_cand = _ints(cand, "failed") + _ints(cand, "timeout")
    div_base, div_cand = _ints(base, "diverged"), _ints(cand, "diverged")
    quiet = (broke_cand == 0) & (div_cand == 0) & (n_cand >= n_base) & (ok_cand > 0)
    errors = cand["errors"].tolist() if "errors" in cand else [""] * len(cand)
    checks = []
    for i in range(len(cand)):
        nc, okc = int(n_cand[i]), int(ok_cand[i])
        if quiet[i]:
            checks.append(Check("trials", PASS, f"{okc}/{nc} ok"))
            continue
        nb, bb, bc, db, dc = (int(a[i]) for a in (n_base, broke_base, broke_cand, div_base, div_cand))
        regressions, warnings = [], []
        if bc:
            msg = f"{bc} of {nc} candidate trials failed or timed out"
            if errors[i]:
                msg += f" ({errors[i][:200]})"
            (warnings if bb else regressions).append(msg + (" (so did the baseline's)" if bb else ""))
        if dc:
            msg = f"{dc} of {nc} candidate seeds diverged"
            (warnings if db else regressions).append(
                msg + (f" (baseline: {db} of {nb})" if db else ", none did in the baseline"))
        if nc < nb:
            warnings.append(f"missing trials: candidate ran {nc} seeds, baseline {nb}")
        if okc == 0 and not regressions:
            (warnings if int(ok_base[i]) == 0 else regressions).append("no candidate trial finished ok")
        if regressions:
            checks.append(Check("trials", REGRESSION, "; ".join(regressions + warnings)))
        elif warnings:
            checks.append(Check("trials", WARNING, "; ".join(warnings)))
        else:
            checks.append(Check("trials", PASS, f"{okc}/{nc} ok"))
    return checks


def _seeds(frame: pd.DataFrame) -> list[str]:
    return [f"{ok}/{n}" for ok, n in zip(_ints(frame, "ok").tolist(), _ints(frame, "seeds").tolist(), strict=True)]


def compare(baseline: pd.DataFrame, candidate: pd.DataFrame, tol: Tolerances | None = None,
            baseline_name: str = "baseline", candidate_name: str = "candidate",
            columns: Sequence[ColumnSpec] = ()) -> GateReport:
    """Compare two trials tables (as Store.read gives them); `columns`: the declared metric columns (their
    `better` decides which way is worse). Raises OptbenchError when no cell overlaps.

    Every rule is applied to all cells at once over the two summaries' columns, so 20 000 cells cost about
    what 20 do; only the verdicts' texts are written per cell."""
    tol = tol or Tolerances()
    # a skipped (not applicable) trial is neither a pass nor a failure: the gate does not see it
    baseline, candidate = (t[t["status"] != "skipped"] if "status" in t else t for t in (baseline, candidate))
    base_sum, cand_sum = summarize(baseline, columns=columns), summarize(candidate, columns=columns)
    if base_sum.empty:
        raise OptbenchError(f"the baseline {baseline_name} has no trials.", "Point --baseline at a results root.")
    if cand_sum.empty:
        raise OptbenchError(f"the candidate {candidate_name} has no trials.", "Point --candidate at a results root.")
    base_idx, cand_idx = _by_cell(base_sum), _by_cell(cand_sum)
    labels = dict(zip(base_idx.index, base_idx["config"].astype(str), strict=True))
    labels.update(zip(cand_idx.index, cand_idx["config"].astype(str), strict=True))
    base_keys, cand_keys = set(base_idx.index), set(cand_idx.index)
    shared, new = sorted(base_keys & cand_keys), sorted(cand_keys - base_keys)
    if not shared:
        raise OptbenchError(
            f"no (task, preset, optimizer, configuration) appears in both {baseline_name} and {candidate_name}.",
            "Run the candidate on the baseline's tasks, preset, optimizers and hyperparameters "
            "(see `optbench results`).",
        )
    b, c = _rows(base_idx, shared), _rows(cand_idx, shared)
    cells = [CellVerdict(*key, config=labels[key], baseline_seeds=bs, candidate_seeds=cs)
             for key, bs, cs in zip(shared, _seeds(b), _seeds(c), strict=True)]
    quality, speed, trials = _quality(cells, b, c, tol), _speed(cells, b, c, tol), _trials(b, c)
    extra = _columns(cells, b, c, tol, columns)
    for cell, *checks, more in zip(cells, quality, speed, trials, extra, strict=True):
        cell.checks = [*checks, *more]
    cells += _new_cells(new, _rows(cand_idx, new), labels)
    cells.sort(key=lambda cell: (cell.task, cell.preset, cell.optimizer, cell.config_id))
    return GateReport(
        baseline=baseline_name, candidate=candidate_name, tolerances=tol, cells=cells,
        only_baseline=sorted(base_keys - cand_keys), only_candidate=new, labels=labels,
    )


def _new_cells(keys: list[tuple[str, ...]], cand: pd.DataFrame, labels: dict[tuple[str, ...], str],
               ) -> list[CellVerdict]:
    """Cells only the candidate has: their own numbers, nothing to compare them with."""
    acc, loss = _floats(cand, "final_test_accuracy_mean"), _floats(cand, "final_test_loss_mean")
    use_acc = np.isfinite(acc)
    has = use_acc | np.isfinite(loss)
    mean = _opt(np.where(use_acc, acc, loss))
    std = _opt(np.where(use_acc, _floats(cand, "final_test_accuracy_std"), _floats(cand, "final_test_loss_std")))
    ratio = _opt(_floats(cand, "step_time_ratio"))
    cells = []
    for i, (key, seeds) in enumerate(zip(keys, _seeds(cand), strict=True)):
        cell = CellVerdict(*key, config=labels[key], baseline_seeds="—", candidate_seeds=seeds)
        if has[i]:
            cell.metric = "final_test_accuracy" if use_acc[i] else "final_test_loss"
            cell.higher_is_better = bool(use_acc[i])
            cell.candidate_mean, cell.candidate_std = mean[i], std[i]
        cell.candidate_ratio = ratio[i]
        cell.checks = [Check("baseline", NEW, "new: not in the baseline (nothing to compare with)")]
        cells.append(cell)
    return cells


def _read(root: str | Path, role: str, skip_bad: bool) -> tuple[pd.DataFrame, list[str], tuple[ColumnSpec, ...]]:
    store = Store(root)
    if not store.exists():
        raise OptbenchError(f"the {role} results directory {root} does not exist or is not a directory.",
                            f"Pass --{role} a results root written by `optbench run`.")
    if not store.has_layout():
        raise OptbenchError(f"{root} has no trials/ folder, so it is not an optbench results root.",
                            f"Pass --{role} the directory given to `optbench run --results`.")
    try:
        res = store.read(on_bad="skip" if skip_bad else "raise", columns=Projection.of(READS))
    except PermissionError as exc:
        raise OptbenchError(f"cannot read the {role} results under {root}: {exc.strerror}.",
                            "Check the directory's permissions.") from None
    return res.trials, [f"{role}: {p}" for p in res.problems], res.columns


def run_gate(baseline: str | Path, candidate: str | Path, tol: Tolerances | None = None,
             skip_bad: bool = False, tasks: list[str] | None = None) -> GateReport:
    """Read both results roots and compare them (only `tasks`, if given); unusable input raises
    OptbenchError (exit 2)."""
    base_trials, base_problems, base_columns = _read(baseline, "baseline", skip_bad)
    cand_trials, cand_problems, cand_columns = _read(candidate, "candidate", skip_bad)
    if tasks:
        base_trials = base_trials[base_trials["task"].isin(tasks)]
        cand_trials = cand_trials[cand_trials["task"].isin(tasks)]
    # the candidate's declarations first: a release that corrects a column's direction is judged by it
    columns = merge_columns([cand_columns, base_columns])
    report = compare(base_trials, cand_trials, tol, str(baseline), str(candidate), columns)
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
