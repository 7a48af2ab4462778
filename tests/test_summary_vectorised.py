"""summarize() groups with vectorised group-bys; this checks it against the plain per-cell loop it replaced
(written out below as the reference), on rows with every status, missing values, studies and ranks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from optbench.summary import GROUP, MEAN_COLUMNS, STATUSES, summarize, with_configs


def reference_cells(trials: pd.DataFrame) -> pd.DataFrame:
    """One dict per cell, built by looping over the groups (the implementation before vectorising)."""
    rows = []
    for key, grp in trials.groupby(GROUP, sort=True):
        ok = grp[grp["status"] == "ok"]
        out = dict(zip(GROUP, key, strict=True))
        out["config"] = str(grp["config"].dropna().iloc[0]) if grp["config"].notna().any() else out["optimizer"]
        out["skipped"] = int((grp["status"] == "skipped").sum())
        out["seeds"] = len(grp) - out["skipped"]
        out["ok"] = len(ok)
        for status in STATUSES:
            out[status] = int((grp["status"] == status).sum())
        out["dataset"] = ", ".join(sorted(set(grp["dataset"].dropna())))
        out["synthetic"] = bool(grp["synthetic"].fillna(False).any())
        out["reached"] = int(ok["steps_to_target"].notna().sum())
        for col in MEAN_COLUMNS:
            vals = pd.to_numeric(ok[col], errors="coerce").dropna() if col in ok else pd.Series(dtype=float)
            out[f"{col}_mean"] = float(vals.mean()) if len(vals) else math.nan
            out[f"{col}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else (0.0 if len(vals) else math.nan)
        out["errors"] = "; ".join(sorted(set(grp.loc[grp["status"] != "ok", "error"].dropna().astype(str))))[:500]
        out["study"] = ", ".join(sorted(set(grp["study"].dropna().astype(str)) - {""})) or None
        out["tuned"] = bool((grp["study_role"] == "final").any())
        ranks = pd.to_numeric(grp["config_rank"], errors="coerce").dropna()
        out["config_rank"] = int(ranks.min()) if len(ranks) else None
        rows.append(out)
    return pd.DataFrame(rows)


@pytest.fixture
def trials() -> pd.DataFrame:
    from benchmarks.bench_store import synthetic_trials

    rng = np.random.default_rng(3)
    t = synthetic_trials(600).to_pandas()
    n = len(t)
    t["status"] = rng.choice(["ok", "ok", "ok", "diverged", "failed", "timeout", "crashed", "skipped"], n)
    t.loc[rng.random(n) < 0.2, "final_test_loss"] = np.nan
    t.loc[rng.random(n) < 0.1, "dataset"] = None
    t["synthetic"] = t["synthetic"].astype(object)
    t.loc[rng.random(n) < 0.3, "synthetic"] = None
    t["study"] = rng.choice([None, "", "lr-study", "other"], n)
    t["study_role"] = rng.choice([None, "final", "search"], n)
    t["config_rank"] = rng.choice([None, 1, 2, 3], n)
    return with_configs(t)


def test_vectorised_summary_equals_the_loop(trials):
    got = summarize(trials, include_search=True).set_index(GROUP)
    want = reference_cells(trials).set_index(GROUP)
    assert list(got.index) == list(want.index)
    for col in want.columns:
        a, b = got[col], want[col]
        if not pd.api.types.is_numeric_dtype(b) or pd.api.types.is_bool_dtype(b):  # None and NaN both mean "none"
            a, b = a.astype(object).where(a.notna(), None), b.astype(object).where(b.notna(), None)
        pd.testing.assert_series_equal(a, b, check_dtype=False, check_exact=False, rtol=1e-12, obj=col)
