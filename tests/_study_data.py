"""Tiny results directories with known study answers (shared by the report CLI and study-page tests)."""

from __future__ import annotations

import json
from pathlib import Path

from optbench.store import Store


def write_trial(root: Path, task: str, opt: str, seed: int, acc: float, gap_measure: float | None = None) -> None:
    trial_id = f"{task}-{opt}-{seed}"
    row = dict(trial_id=trial_id, task=task, preset="smoke", optimizer=opt, seed=seed, status="ok",
               synthetic=False, dataset="real", hparams=json.dumps({"lr": 1e-3}), target_name="val_accuracy",
               final_test_accuracy=acc, final_test_loss=1 - acc, final_train_loss=0.2)
    if gap_measure is not None:
        row["sharpness"] = gap_measure
    curves = [dict(trial_id=trial_id, step=s, wall_time_s=0.1 * s, split="test", name="test_accuracy",
                   value=acc * s / 3) for s in (1, 2, 3)]
    Store(root).write(row, curves)


def write_studies(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ab.json").write_text(json.dumps({"id": "ab", "kind": "pairwise", "question": "Is a better than b?",
                                                   "a": "a", "b": "b", "minimum_seeds": 3}))
    (directory / "geo.json").write_text(json.dumps({"id": "geo", "kind": "geometry", "question": "Does it predict?",
                                                    "measures": ["sharpness"]}))
    return directory


def write_ab_results(root: Path) -> Path:
    for seed in range(4):
        write_trial(root, "t", "a", seed, 0.9 + 0.001 * seed, gap_measure=1.0 + seed)
        write_trial(root, "t", "b", seed, 0.8 + 0.001 * seed, gap_measure=0.5 + seed)
    return root
