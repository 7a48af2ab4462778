"""Studies: a question the board answers from its Parquet, with the protocol, the evidence and the answer.

A leaderboard ranks; a study asks one thing ("does optimizer A improve on B?", "does a geometry measure
predict generalisation?") and answers it with intervals, including "no difference detectable". Studies are
declared as data (JSON files, e.g. the published board's `leaderboard/studies/`), so the engine names no
optimizer; this module only knows the two kinds of question:

- `pairwise`: per task, A against B, each at its selected configuration (the tuning protocol's choice, made on
  validation metrics) or its only one, paired by seed; the mean difference of the task's final test metric
  with a bootstrap interval over seed pairs.
- `geometry`: per task, Spearman's rank correlation between each geometry measure at the end of training and
  the generalisation gap (test loss − train loss) and the test metric, across every ok trial of every optimizer
  and configuration, with bootstrap intervals; plus the paired comparison of |ρ| between two measures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optbench.errors import OptbenchError
from optbench.stats import N_BOOT, Interval, average_ranks, paired_difference, spearman

KINDS = ("pairwise", "geometry")


@dataclass(frozen=True)
class Study:
    """One declared question. `a`/`b` for pairwise studies; `measures` (trials-table columns) for geometry."""

    id: str
    kind: str
    question: str
    protocol: str = ""
    a: str = ""
    b: str = ""
    #: a hyperparameter of A whose values are compared too (e.g. a mode switch), each at its best configuration
    variants_by: str = ""
    measures: tuple[str, ...] = ()
    #: restrict to these tasks (default: every task with real, i.e. non-synthetic, data)
    tasks: tuple[str, ...] = ()
    minimum_seeds: int = 5


def load_study(path: Path) -> Study:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OptbenchError(f"cannot read study file {path}: {exc}.", "Fix or remove the file.") from None
    fields = set(Study.__dataclass_fields__)
    unknown = sorted(set(data) - fields)
    if unknown or data.get("kind") not in KINDS or not data.get("id") or not data.get("question"):
        raise OptbenchError(
            f"study file {path} is not a study: it needs id, kind ({' or '.join(KINDS)}) and question"
            + (f", and has unknown keys {unknown}" if unknown else "") + ".",
            "See docs/studies.md for the format.",
        )
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    study = Study(**data)
    if study.kind == "pairwise" and not (study.a and study.b):
        raise OptbenchError(f"pairwise study {study.id!r} ({path}) needs both 'a' and 'b'.", "Name two optimizers.")
    if study.kind == "geometry" and len(study.measures) < 1:
        raise OptbenchError(f"geometry study {study.id!r} ({path}) names no measures.", "List trials columns.")
    return study


def load_studies(directory: Path) -> list[Study]:
    if not directory.is_dir():
        raise OptbenchError(f"no studies directory at {directory}.", "Pass --studies DIR with the study files.")
    return [load_study(p) for p in sorted(directory.glob("*.json"))]


# --- shared helpers ------------------------------------------------------------------------------------
def judged_metric(trials: pd.DataFrame) -> tuple[str, bool]:
    """The column a task is judged on (its target's test counterpart) and whether higher is better."""
    names = trials.get("target_name", pd.Series(dtype=object)).dropna().astype(str)
    name = names.iloc[0] if len(names) else ""
    if "accuracy" in name or ("final_test_accuracy" in trials and trials["final_test_accuracy"].notna().any()
                              and not name):
        return "final_test_accuracy", True
    return "final_test_loss", False


def _config_key(trials: pd.DataFrame) -> pd.Series:
    if "config_id" in trials.columns:
        return trials["config_id"].fillna(trials["hparams"].astype(str))
    return trials["hparams"].astype(str)


def _val_column(higher: bool) -> str:
    return "final_val_accuracy" if higher else "final_val_loss"


def chosen_configuration(rows: pd.DataFrame, higher: bool) -> pd.DataFrame:
    """The rows of one optimizer's reported configuration on one task: the tuning protocol's selected one
    (`selected` rows, re-run on fresh seeds), else the only one, else the best mean VALIDATION metric — never the
    test metric."""
    if rows.empty:
        return rows
    if "selected" in rows.columns and rows["selected"].fillna(False).astype(bool).any():
        keys = set(_config_key(rows[rows["selected"].fillna(False).astype(bool)]))
        return rows[_config_key(rows).isin(keys)]
    keys = _config_key(rows)
    if keys.nunique() == 1:
        return rows
    val = _val_column(higher)
    if val not in rows.columns or rows[val].isna().all():
        return rows.iloc[0:0]  # several configurations and no validation metric: nothing honest to pick
    means = rows.assign(_k=keys).groupby("_k")[val].mean().dropna()
    best = means.idxmax() if higher else means.idxmin()
    return rows[keys == best]


def _real_ok(trials: pd.DataFrame, tasks: Sequence[str], search: bool = False) -> pd.DataFrame:
    """Ok trials on real data; a tuning study's search trials only when asked (they are configurations tried
    on one seed, never reported numbers — but each is one more point for a correlation across configurations)."""
    ok = trials[trials["status"] == "ok"]
    if not search and "study_role" in ok.columns:
        ok = ok[ok["study_role"].fillna("") != "search"]
    if "synthetic" in ok.columns:
        ok = ok[~ok["synthetic"].fillna(False).astype(bool)]
    if tasks:
        ok = ok[ok["task"].isin(list(tasks))]
    return ok


# --- pairwise --------------------------------------------------------------------------------------------
@dataclass
class PairRow:
    task: str
    metric: str
    higher_is_better: bool
    n_pairs: int
    mean_a: float
    mean_b: float
    difference: Interval  # a − b, sign as measured (not flipped for direction)
    verdict: str
    a_trials: list[str] = field(default_factory=list)  # the trial ids behind each side (curves on the study page)
    b_trials: list[str] = field(default_factory=list)


@dataclass
class PairwiseResult:
    study: Study
    rows: list[PairRow] = field(default_factory=list)
    variants: list[PairRow] = field(default_factory=list)  # A's variants, each against B
    answer: str = ""


def _pair(task: str, a_rows: pd.DataFrame, b_rows: pd.DataFrame, metric: str, higher: bool,
          a_name: str, b_name: str) -> PairRow:
    a_by_seed = a_rows.groupby("seed")[metric].mean()
    b_by_seed = b_rows.groupby("seed")[metric].mean()
    seeds = sorted(set(a_by_seed.index) & set(b_by_seed.index))
    diff = paired_difference(a_by_seed.loc[seeds].to_numpy(), b_by_seed.loc[seeds].to_numpy())
    if diff.n < 2:
        verdict = "too few paired seeds"
    elif not diff.excludes_zero:
        verdict = "no difference detectable"
    else:
        a_better = (diff.estimate > 0) == higher
        verdict = f"{a_name if a_better else b_name} better"
    ids = [str(t) for t in a_rows.loc[a_rows["seed"].isin(seeds), "trial_id"]] if "trial_id" in a_rows else []
    b_ids = [str(t) for t in b_rows.loc[b_rows["seed"].isin(seeds), "trial_id"]] if "trial_id" in b_rows else []
    return PairRow(task, metric, higher, diff.n, float(a_by_seed.loc[seeds].mean()) if seeds else math.nan,
                   float(b_by_seed.loc[seeds].mean()) if seeds else math.nan, diff, verdict, ids, b_ids)


def run_pairwise(study: Study, trials: pd.DataFrame) -> PairwiseResult:
    out = PairwiseResult(study)
    ok = _real_ok(trials, study.tasks)
    for task, t_rows in ok.groupby("task", sort=True):
        metric, higher = judged_metric(t_rows)
        a_all, b_all = t_rows[t_rows["optimizer"] == study.a], t_rows[t_rows["optimizer"] == study.b]
        if a_all.empty or b_all.empty:
            continue
        b_rows = chosen_configuration(b_all, higher)
        out.rows.append(_pair(str(task), chosen_configuration(a_all, higher), b_rows, metric, higher,
                              study.a, study.b))
        if study.variants_by:
            values = a_all["hparams"].map(lambda h, k=study.variants_by: json.loads(h).get(k) if h else None)
            for value in sorted(set(values.dropna().astype(str))):
                sub = a_all[values.astype(str) == value]
                row = _pair(str(task), chosen_configuration(sub, higher), b_rows, metric, higher,
                            f"{study.a}[{study.variants_by}={value}]", study.b)
                row.task = f"{task} · {study.variants_by}={value}"
                out.variants.append(row)
    out.answer = pairwise_answer(study, out.rows)
    return out


def pairwise_answer(study: Study, rows: Sequence[PairRow]) -> str:
    if not rows:
        return (f"Not answered: no real-data task has ok trials of both {study.a} and {study.b}. "
                "Run the study's protocol first.")
    a_wins = [r.task for r in rows if r.verdict == f"{study.a} better"]
    b_wins = [r.task for r in rows if r.verdict == f"{study.b} better"]
    ties = [r.task for r in rows if r.verdict == "no difference detectable"]
    few = [r for r in rows if r.n_pairs < study.minimum_seeds]
    parts = []
    if a_wins:
        parts.append(f"{study.a} is better on {', '.join(a_wins)}")
    if b_wins:
        parts.append(f"{study.b} is better on {', '.join(b_wins)}")
    if ties:
        parts.append(f"no difference is detectable on {', '.join(ties)}")
    text = "; ".join(parts) + " (95% bootstrap intervals over paired seeds)."
    if not a_wins and not b_wins:
        text = f"No: across {len(rows)} task(s) no difference between {study.a} and {study.b} is detectable (95% " \
               "bootstrap intervals over paired seeds all contain zero)."
    elif a_wins and not b_wins:
        text = f"Yes, on {len(a_wins)} of {len(rows)} task(s): " + text
    elif b_wins and not a_wins:
        text = f"No — the opposite on {len(b_wins)} of {len(rows)} task(s): " + text
    else:
        text = "Mixed: " + text
    if few:
        text += f" Caution: {len(few)} task(s) have fewer than {study.minimum_seeds} paired seeds."
    return text


# --- geometry ----------------------------------------------------------------------------------------------
@dataclass
class CorrelationRow:
    task: str
    measure: str
    target: str  # "generalisation gap" or the test metric's column
    rho: Interval


@dataclass
class GeometryResult:
    study: Study
    rows: list[CorrelationRow] = field(default_factory=list)
    #: per task: |ρ(first measure)| − |ρ(second measure)| against the generalisation gap, paired resamples
    contrasts: list[tuple[str, str, str, Interval]] = field(default_factory=list)
    answer: str = ""


def generalisation_gap(trials: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(trials["final_test_loss"], errors="coerce") - pd.to_numeric(
        trials["final_train_loss"], errors="coerce")


def abs_rho_contrast(x1: np.ndarray, x2: np.ndarray, y: np.ndarray, seed: int | None = None,
                     n_boot: int = N_BOOT) -> Interval:
    """|ρ(x1, y)| − |ρ(x2, y)| with both correlations computed on the SAME resampled trials each time."""
    keep = np.isfinite(x1) & np.isfinite(x2) & np.isfinite(y)
    x1, x2, y = x1[keep], x2[keep], y[keep]
    n = len(y)
    if n < 3:
        return Interval(math.nan, math.nan, math.nan, n)
    est = abs(spearman(x1, y, n_boot=1).estimate) - abs(spearman(x2, y, n_boot=1).estimate)
    idx = np.random.default_rng(seed if seed is not None else 7).integers(0, n, size=(n_boot, n))
    ry = average_ranks(y[idx])

    def rho(r1: np.ndarray) -> np.ndarray:
        a = r1 - r1.mean(axis=-1, keepdims=True)
        b = ry - ry.mean(axis=-1, keepdims=True)
        den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1), np.nan)

    d = np.abs(rho(average_ranks(x1[idx]))) - np.abs(rho(average_ranks(x2[idx])))
    d = d[np.isfinite(d)]
    if len(d) < n_boot // 2:
        return Interval(est, math.nan, math.nan, n)
    lo, hi = np.quantile(d, [0.025, 0.975])
    return Interval(est, float(lo), float(hi), n)


def run_geometry(study: Study, trials: pd.DataFrame) -> GeometryResult:
    out = GeometryResult(study)
    ok = _real_ok(trials, study.tasks, search=True)
    measures = [m for m in study.measures if m in ok.columns]
    for task, rows in ok.groupby("task", sort=True):
        metric, _ = judged_metric(rows)
        gap = generalisation_gap(rows).to_numpy(dtype=float)
        test = pd.to_numeric(rows[metric], errors="coerce").to_numpy(dtype=float)
        for m in measures:
            x = pd.to_numeric(rows[m], errors="coerce").to_numpy(dtype=float)
            out.rows.append(CorrelationRow(str(task), m, "generalisation gap", spearman(x, gap)))
            out.rows.append(CorrelationRow(str(task), m, metric, spearman(x, test)))
        if len(measures) >= 2:
            x1 = pd.to_numeric(rows[measures[0]], errors="coerce").to_numpy(dtype=float)
            x2 = pd.to_numeric(rows[measures[1]], errors="coerce").to_numpy(dtype=float)
            out.contrasts.append((str(task), measures[0], measures[1], abs_rho_contrast(x1, x2, gap)))
    out.answer = geometry_answer(study, out, measures)
    return out


def geometry_answer(study: Study, result: GeometryResult, measures: Sequence[str]) -> str:
    gap_rows = [r for r in result.rows if r.target == "generalisation gap" and r.rho.n >= 3]
    if not gap_rows:
        return "Not answered: no real-data task has three or more ok trials with these measures."
    lines = []
    for m in measures:
        rs = [r for r in gap_rows if r.measure == m]
        sig = [r for r in rs if r.rho.excludes_zero]
        pos = sum(r.rho.estimate > 0 for r in sig)
        lines.append(f"{m} correlates with the generalisation gap on {len(sig)} of {len(rs)} task(s)"
                     + (f" ({pos} positively)" if sig else ""))
    text = "; ".join(lines) + " (Spearman, 95% bootstrap intervals over trials)."
    if result.contrasts:
        first, second = result.contrasts[0][1], result.contrasts[0][2]
        better = [t for t, _, _, ci in result.contrasts if ci.excludes_zero and ci.estimate > 0]
        worse = [t for t, _, _, ci in result.contrasts if ci.excludes_zero and ci.estimate < 0]
        text += (f" {first} predicts the gap better than {second} on {len(better)} task(s), worse on "
                 f"{len(worse)}, indistinguishably on {len(result.contrasts) - len(better) - len(worse)}.")
    return text


def run_study(study: Study, trials: pd.DataFrame) -> Any:
    return run_pairwise(study, trials) if study.kind == "pairwise" else run_geometry(study, trials)
