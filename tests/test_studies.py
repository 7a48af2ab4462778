"""Studies on hand-made trial tables whose answer is known by construction."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from optbench.errors import OptbenchError
from optbench.studies import Study, chosen_configuration, load_study, run_geometry, run_pairwise


def _rows(task, opt, seeds, acc, val=None, hp=None, **extra):
    return [dict(task=task, optimizer=opt, seed=s, status="ok", synthetic=False, target_name="val_accuracy",
                 hparams=json.dumps(hp or {"lr": 1e-3}), final_test_accuracy=a,
                 final_val_accuracy=(val[i] if val is not None else a), final_test_loss=1 - a,
                 final_train_loss=0.5, **extra) for i, (s, a) in enumerate(zip(seeds, acc, strict=True))]


def test_pairwise_finds_a_paired_improvement_and_says_no_difference_when_there_is_none():
    rng = np.random.default_rng(0)
    seeds = range(6)
    seed_effect = rng.normal(0, 0.05, 6)  # both optimizers share it: only pairing sees the 0.02 shift
    rows = (_rows("t-better", "a", seeds, 0.8 + seed_effect + 0.02 + rng.normal(0, 1e-3, 6))
            + _rows("t-better", "b", seeds, 0.8 + seed_effect + rng.normal(0, 1e-3, 6))
            + _rows("t-same", "a", seeds, 0.8 + rng.normal(0, 0.02, 6))
            + _rows("t-same", "b", seeds, 0.8 + rng.normal(0, 0.02, 6))
            + _rows("t-synth", "a", seeds, [0.1] * 6))
    trials = pd.DataFrame(rows)
    trials.loc[trials["task"] == "t-synth", "synthetic"] = True
    res = run_pairwise(Study(id="s", kind="pairwise", question="?", a="a", b="b"), trials)
    verdicts = {r.task: r.verdict for r in res.rows}
    assert verdicts == {"t-better": "a better", "t-same": "no difference detectable"}  # synthetic task left out
    better = next(r for r in res.rows if r.task == "t-better")
    assert better.n_pairs == 6 and better.difference.lo > 0
    assert res.answer.startswith("Yes, on 1 of 2 task(s)")


def test_selection_reads_validation_never_test():
    # configuration x: best on validation, worst on test; y: the reverse. Reading test would pick y.
    rows = (_rows("t", "a", range(3), acc=[0.5] * 3, val=[0.9] * 3, hp={"lr": 1.0})
            + _rows("t", "a", range(3), acc=[0.95] * 3, val=[0.6] * 3, hp={"lr": 2.0}))
    chosen = chosen_configuration(pd.DataFrame(rows), higher=True)
    assert set(chosen["hparams"]) == {json.dumps({"lr": 1.0})}


def test_selected_rows_win_over_any_metric():
    rows = (_rows("t", "a", range(3), acc=[0.5] * 3, hp={"lr": 1.0}, selected=False)
            + _rows("t", "a", range(3), acc=[0.4] * 3, hp={"lr": 2.0}, selected=True))
    assert set(chosen_configuration(pd.DataFrame(rows), True)["hparams"]) == {json.dumps({"lr": 2.0})}


def test_geometry_study_sees_a_predictive_measure_and_an_uninformative_one():
    rng = np.random.default_rng(1)
    n = 30
    gap = rng.uniform(0, 1, n)
    trials = pd.DataFrame(dict(task="t", optimizer="o", seed=range(n), status="ok", synthetic=False,
                               target_name="val_loss", hparams="{}", final_train_loss=0.1, final_test_loss=0.1 + gap,
                               good=np.exp(3 * gap) + rng.normal(0, 0.05, n), noise=rng.normal(size=n)))
    res = run_geometry(Study(id="g", kind="geometry", question="?", measures=("good", "noise")), trials)
    rho = {(r.measure, r.target): r.rho for r in res.rows}
    assert rho[("good", "generalisation gap")].estimate > 0.9 and rho[("good", "generalisation gap")].excludes_zero
    assert not rho[("noise", "generalisation gap")].excludes_zero
    (_, first, second, contrast), = res.contrasts
    assert (first, second) == ("good", "noise") and contrast.lo > 0
    assert "good predicts the gap better than noise on 1 task(s)" in res.answer


def test_bad_study_files_are_one_sentence(tmp_path):
    (tmp_path / "x.json").write_text('{"id": "x", "kind": "vote", "question": "?"}')
    with pytest.raises(OptbenchError, match="is not a study"):
        load_study(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"id": "y", "kind": "pairwise", "question": "?", "a": "lion"}')
    with pytest.raises(OptbenchError, match="needs both 'a' and 'b'"):
        load_study(tmp_path / "y.json")
    (tmp_path / "z.json").write_text("{not json")
    with pytest.raises(OptbenchError, match="cannot read study file"):
        load_study(tmp_path / "z.json")


def test_pairwise_reports_fresh_seeds_never_the_search_trial():
    search = _rows("t", "a", [99], acc=[0.99], hp={"lr": 1.0}, selected=True, study_role="search")
    final = _rows("t", "a", range(3), acc=[0.7] * 3, hp={"lr": 1.0}, selected=True, study_role="final")
    other = _rows("t", "b", [99, 0, 1, 2], acc=[0.1, 0.6, 0.6, 0.6], study_role="")
    res = run_pairwise(Study(id="s", kind="pairwise", question="?", a="a", b="b"), pd.DataFrame(search + final + other))
    (row,) = res.rows
    assert row.n_pairs == 3 and row.mean_a == pytest.approx(0.7)  # seed 99 (the search trial) is not a pair
