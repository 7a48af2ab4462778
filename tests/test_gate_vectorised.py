"""The gate judges every cell at once (columnar rules over the two summaries); this checks it against the
per-cell loop it replaced, written out below as the reference, on randomised trials tables with every
status, missing metrics and ratios, speed measured against other references, missing seeds and new cells.
It also checks that a declared metric column is judged in the direction its declaration gives."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from optbench import ColumnSpec
from optbench.gate import (
    NEW,
    PASS,
    REGRESSION,
    SKIPPED,
    WARNING,
    CellVerdict,
    Check,
    GateReport,
    Tolerances,
    compare,
    run_gate,
)
from optbench.schema import TrialRow
from optbench.settings import speed_reference
from optbench.store import Store
from optbench.summary import cell_key, summarize


# --- the per-cell reference (the implementation before vectorising) -----------------------------------
def _num(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _choose_metric(base, cand):
    for metric, higher in (("final_test_accuracy", True), ("final_test_loss", False)):
        if _num(base.get(f"{metric}_mean")) is not None and _num(cand.get(f"{metric}_mean")) is not None:
            return metric, higher
    return None, False


def _trials_check(base, cand):
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
            msg + (f" (baseline: {div_base} of {n_base})" if div_base else ", none did in the baseline"))
    if n_cand < n_base:
        warnings.append(f"missing trials: candidate ran {n_cand} seeds, baseline {n_base}")
    if int(cand["ok"]) == 0 and not regressions:
        (warnings if int(base["ok"]) == 0 else regressions).append("no candidate trial finished ok")
    if regressions:
        return Check("trials", REGRESSION, "; ".join(regressions + warnings))
    if warnings:
        return Check("trials", WARNING, "; ".join(warnings))
    return Check("trials", PASS, f"{int(cand['ok'])}/{n_cand} ok")


def _quality_check(cell, base, cand, tol):
    metric, higher = _choose_metric(base, cand)
    if metric is None:
        return Check("quality", SKIPPED, "no final test metric on both sides (no ok trial)")
    b_mean, c_mean = float(base[f"{metric}_mean"]), float(cand[f"{metric}_mean"])
    b_std = _num(base.get(f"{metric}_std")) or 0.0
    c_std = _num(cand.get(f"{metric}_std")) or 0.0
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


def _is_slower(cand, base, tol):
    c_lo, b_hi = cand[1], base[2]
    if any(math.isnan(x) for x in (c_lo, b_hi)) or b_hi <= 0:
        return False
    return c_lo / b_hi - 1 > tol


def _speed_check(cell, base, cand, tol):
    ref = speed_reference()
    names = ("opt_step_ratio", "opt_step_ratio_lo", "opt_step_ratio_hi")
    b, c = tuple(_num(base.get(n)) for n in names), tuple(_num(cand.get(n)) for n in names)
    if not (any(x is None for x in (*b, *c)) or base.get("speed_ref") != ref or cand.get("speed_ref") != ref):
        cell.baseline_ratio, cell.candidate_ratio = b[0], c[0]
        cell.ratio_growth = c[0] / b[0] - 1 if b[0] else None
        text = f"step ×{ref} {b[0]:.2f} [{b[1]:.2f}–{b[2]:.2f}] → {c[0]:.2f} [{c[1]:.2f}–{c[2]:.2f}]"
        if _is_slower(c, b, tol.speed_tol):
            return Check("speed", REGRESSION, f"{text}: slower beyond the intervals (allowed +{tol.speed_tol:.0%})")
        return Check("speed", PASS, f"{text} (interleaved, intervals overlap or within +{tol.speed_tol:.0%})")
    b, c = _num(base.get("step_time_ratio")), _num(cand.get("step_time_ratio"))
    cell.baseline_ratio, cell.candidate_ratio = b, c
    if b is None or c is None:
        side = "baseline" if b is None else "candidate"
        return Check("speed", SKIPPED, f"no ok {ref} trial in the same run of the {side} to compare with")
    growth = c / b - 1 if b > 0 else math.inf
    cell.ratio_growth = growth
    if growth > tol.speed_tol:
        return Check("speed", REGRESSION, f"step time ×{ref} grew {growth:+.0%} ({b:.2f} → {c:.2f}; "
                     f"allowed +{tol.speed_tol:.0%})")
    return Check("speed", PASS, f"step time ×{ref} {b:.2f} → {c:.2f} ({growth:+.0%})")


def reference_compare(baseline: pd.DataFrame, candidate: pd.DataFrame, tol: Tolerances) -> GateReport:
    baseline, candidate = (t[t["status"] != "skipped"] for t in (baseline, candidate))
    base_idx = {cell_key(r): r for _, r in summarize(baseline).iterrows()}
    cand_idx = {cell_key(r): r for _, r in summarize(candidate).iterrows()}
    labels = {k: str(r["config"]) for k, r in [*base_idx.items(), *cand_idx.items()]}
    shared, new = sorted(set(base_idx) & set(cand_idx)), sorted(set(cand_idx) - set(base_idx))
    cells = []
    for key in sorted(shared + new):
        b, c = base_idx.get(key), cand_idx[key]
        cell = CellVerdict(*key, config=labels[key], baseline_seeds=f"{int(b['ok'])}/{int(b['seeds'])}"
                           if b is not None else "—", candidate_seeds=f"{int(c['ok'])}/{int(c['seeds'])}")
        if b is None:
            metric, higher = _choose_metric(c, c)
            if metric is not None:
                cell.metric, cell.higher_is_better = metric, higher
                cell.candidate_mean, cell.candidate_std = _num(c.get(f"{metric}_mean")), _num(c.get(f"{metric}_std"))
            cell.candidate_ratio = _num(c.get("step_time_ratio"))
            cell.checks = [Check("baseline", NEW, "new: not in the baseline (nothing to compare with)")]
        else:
            speed = (Check("speed", SKIPPED, "speed not compared (--quality-only: the baseline ran elsewhere)")
                     if tol.quality_only else _speed_check(cell, b, c, tol))
            cell.checks = [_quality_check(cell, b, c, tol), speed, _trials_check(b, c)]
        cells.append(cell)
    return GateReport("baseline", "candidate", tol, cells, sorted(set(base_idx) - set(cand_idx)), new, labels=labels)


# --- randomised tables ---------------------------------------------------------------------------------
def _table(seed: int) -> pd.DataFrame:
    """3 optimizers (the speed reference first) x 20 tasks x 5 configurations x 5 seeds, then disturbed."""
    from benchmarks.bench_store import synthetic_trials

    rng = np.random.default_rng(seed)
    t = synthetic_trials(1500, seed=seed).to_pandas()
    n = len(t)
    t["status"] = rng.choice(["ok"] * 12 + ["diverged", "failed", "timeout", "crashed", "skipped"], n)
    t["error"] = np.where(t["status"].isin(["failed", "timeout"]), rng.choice(["E1", "E2", "boom"], n), None)
    t.loc[rng.random(n) < 0.15, "final_test_accuracy"] = np.nan  # then the loss is compared
    t.loc[rng.random(n) < 0.05, "final_test_loss"] = np.nan
    t["final_test_accuracy"] += rng.normal(0, 0.05, n) * (rng.random(n) < 0.3)
    t["step_time_ms"] *= np.exp(rng.normal(0, 0.3, n))
    measured = rng.random(n) < 0.6
    ratio = np.exp(rng.normal(0, 0.3, n))
    width = rng.uniform(0.01, 0.4, n)
    t["opt_step_ratio"] = np.where(measured, ratio, np.nan)
    t["opt_step_ratio_lo"] = np.where(measured, ratio * (1 - width), np.nan)
    t["opt_step_ratio_hi"] = np.where(measured, ratio * (1 + width), np.nan)
    t["speed_ref"] = np.where(measured, rng.choice([speed_reference(), speed_reference(), "other-ref"], n), None)
    return t.iloc[rng.permutation(n)[: int(n * 0.93)]]  # missing seeds, some cells with one seed or none


@pytest.mark.parametrize(("seed", "tol"), [(1, Tolerances()),
                                          (2, Tolerances(quality_k=0.5, quality_tol=0.0, speed_tol=0.02)),
                                          (3, Tolerances(quality_only=True))], ids=["default", "tight", "quality-only"])
def test_vectorised_compare_gives_the_per_cell_verdicts(seed, tol):
    base, cand = _table(seed), _table(seed + 100)
    renamed = cand["config_id"].isin(cand["config_id"].drop_duplicates().sample(5, random_state=seed))
    cand.loc[renamed, "config_id"] += "-new"  # cells only the candidate has
    got, want = compare(base, cand, tol).to_dict(), reference_compare(base, cand, tol).to_dict()
    statuses = {c["status"] for c in want["cells"]}
    assert {PASS, REGRESSION, NEW} <= statuses  # the tables exercise the rules
    assert want["only_baseline"] and want["only_candidate"]
    assert len(got["cells"]) == len(want["cells"])
    for g, w in zip(got["cells"], want["cells"], strict=True):
        assert g == w
    assert got == want


# --- declared metric columns ---------------------------------------------------------------------------
ERROR = ColumnSpec("probe_error", better="min", description="lower is better")
SCORE = ColumnSpec("probe_score", better="max", description="higher is better")
SHOWN = ColumnSpec("probe_norm", description="no direction: shown, never judged")


def _write(root, optimizer: str, values: dict[str, list[float]]) -> None:
    store = Store(root)
    for seed in range(3):
        row = TrialRow((ERROR, SCORE, SHOWN), trial_id=f"{optimizer}-{seed}-{root.name}", run_id="r",
                       task="probe-task", preset="smoke", optimizer=optimizer, seed=seed, status="ok",
                       final_test_loss=0.5, config_id=f"{optimizer}-c", config=optimizer,
                       **{k: v[seed] for k, v in values.items()})
        store.write(row, [])


def test_declared_columns_are_judged_in_their_declared_direction(tmp_path):
    steady = {"probe_error": [1.0, 1.01, 0.99], "probe_score": [1.0, 1.01, 0.99], "probe_norm": [1.0, 1.0, 1.0]}
    _write(tmp_path / "base", "up", steady)
    _write(tmp_path / "base", "down", steady)
    # both columns rise by 50 %: worse for the error (lower is better), better for the score; the undirected
    # column moves ten-fold and is not judged
    rise = {"probe_error": [1.5, 1.51, 1.49], "probe_score": [1.5, 1.51, 1.49], "probe_norm": [10.0] * 3}
    fall = {"probe_error": [0.5, 0.51, 0.49], "probe_score": [0.5, 0.51, 0.49], "probe_norm": [0.1] * 3}
    _write(tmp_path / "cand", "up", rise)
    _write(tmp_path / "cand", "down", fall)
    report = run_gate(tmp_path / "base", tmp_path / "cand")
    cells = {c.optimizer: c for c in report.cells}
    up, down = cells["up"], cells["down"]
    assert up.check("quality:probe_error").status == REGRESSION
    assert "0.5 higher than baseline" in up.check("quality:probe_error").detail
    assert up.check("quality:probe_score").status == PASS
    assert down.check("quality:probe_error").status == PASS
    assert down.check("quality:probe_score").status == REGRESSION
    assert "0.5 lower than baseline" in down.check("quality:probe_score").detail
    assert up.check("quality:probe_norm") is None and down.check("quality:probe_norm") is None
    assert up.status == down.status == REGRESSION and report.exit_code == 1
    # unchanged numbers pass; the same rise within the allowed spread passes too
    assert run_gate(tmp_path / "base", tmp_path / "base").passed
    loose = run_gate(tmp_path / "base", tmp_path / "cand", Tolerances(quality_tol=0.6))
    assert loose.passed, [c.checks for c in loose.cells]


def test_a_column_only_one_side_measured_is_named_not_judged():
    from benchmarks.bench_store import synthetic_trials

    base = synthetic_trials(5).to_pandas().assign(status="ok", probe_error=np.nan)  # one cell, five seeds
    cand = base.assign(probe_error=3.0)
    [cell] = compare(base, cand, columns=(ERROR,)).cells
    assert cell.check("quality:probe_error").status == SKIPPED
    assert cell.check("quality:probe_error").detail == "probe_error measured by the candidate only"
    assert cell.status == PASS
