"""Validation splits and the `skipped` status.

Every task reports validation metrics (what targets and tuning use) apart from test metrics (reported only); the
splits are disjoint. A pair that cannot run by design ends as `skipped`, not `failed`.
"""

from __future__ import annotations

import torch
from optbench.tasks import digits, vision

from optbench.store import Store


def _rows(root):
    return Store(root).read().trials


def test_digits_splits_are_disjoint_and_fixed():
    tr_x, tr_y, va_x, va_y, te_x, te_y = digits.digits_split()
    assert (len(tr_y), len(va_y), len(te_y)) == (1077, digits.VAL_SIZE, digits.TEST_SIZE)
    rows = {tuple(x.flatten().tolist()) for x in tr_x}
    # sklearn's digits hold a few duplicate images; nearly all validation/test images must be unseen in training
    assert sum(tuple(x.flatten().tolist()) in rows for x in va_x) <= 3
    assert sum(tuple(x.flatten().tolist()) in rows for x in te_x) <= 3
    assert torch.bincount(va_y, minlength=10).min() >= 30  # stratified: every class is there


def test_classifier_evaluate_reports_val_and_test_separately():
    task = digits.build("smoke", 0, "cpu")
    out = task.evaluate()
    assert set(out) == {"val_loss", "val_accuracy", "test_loss", "test_accuracy"}
    assert out["val_loss"] != out["test_loss"]  # two different sets, not one number twice
    assert task.target is not None and task.target.name == "val_accuracy"


def test_synthetic_cifar_val_set_leaves_train_and_test_unchanged():
    cfg = vision.CONFIGS["resnet-cifar10"]["smoke"]
    data = vision.cifar_data(cfg, None, synthetic=True)
    from optbench.tasks.cifar10 import synthetic_cifar10

    plain = synthetic_cifar10(cfg.n_train, cfg.n_test)
    assert torch.equal(plain.train_x, data.train_x) and torch.equal(plain.test_x, data.test_x)
    assert data.val_x is not None and len(data.val_y) == cfg.n_test
    assert not torch.equal(data.val_x, data.test_x)


def test_real_cifar_validation_is_the_held_out_end_of_the_training_files(tmp_path, monkeypatch):
    from test_cifar_loader import write_binary

    write_binary(tmp_path)  # the last tenth of the training files becomes the validation set
    cfg = vision.VisionConfig(budget=1, eval_every=1, batch_size=8, n_train=None, n_test=None,
                              target_accuracy=0.5, curvature_size=8)
    full = vision.load_cifar10(tmp_path)
    data = vision.cifar_data(cfg, tmp_path, synthetic=False)
    cut = len(full.train_y) - len(full.train_y) // 10
    assert len(data.train_y) == cut and len(data.val_y) == len(full.train_y) // 10 > 0
    assert torch.equal(data.train_x, full.train_x[:cut]) and torch.equal(data.val_x, full.train_x[cut:])


def test_runner_records_final_val_metrics_and_val_curves(cli, tmp_path, monkeypatch):
    import dataclasses

    monkeypatch.setitem(digits.CONFIGS, "smoke", dataclasses.replace(digits.CONFIGS["smoke"], budget=10,
                                                                      eval_every=5))
    out = cli("run", "-o", "adamw", "-t", "cnn-digits", "--no-metrics", "--results", str(tmp_path))
    assert out.exit_code == 0, out.output
    res = Store(tmp_path).read(with_curves=True)
    row = res.trials.iloc[0]
    assert 0 < row["final_val_accuracy"] <= 1 and row["final_val_loss"] > 0
    assert row["final_val_loss"] != row["final_test_loss"]
    val = res.curves[res.curves["split"] == "val"]
    assert set(val["name"]) == {"val_loss", "val_accuracy"} and sorted(set(val["step"])) == [5, 10]


def test_optimizer_that_needs_a_model_is_skipped_on_a_task_without_one(cli, tmp_path):
    out = cli("run", "-o", "adafisher", "-t", "quadratic-well-conditioned", "--no-metrics",
              "--results", str(tmp_path))
    assert out.exit_code == 0, out.output
    row = _rows(tmp_path).iloc[0]
    assert row["status"] == "skipped" and "needs a model" in row["error"]
    assert "1 skipped" in out.output


def _trial_rows(statuses):
    import pandas as pd

    from optbench.store import TRIAL_COLUMNS

    rows = pd.DataFrame([
        {"trial_id": f"t{i}", "run_id": "r", "task": "q", "preset": "smoke", "optimizer": "adafisher", "seed": i,
         "status": s, "error": "not applicable: needs a model" if s == "skipped" else None, "dataset": "d",
         "synthetic": False, "hparams": "{}", "step_time_ms": 1.0, "optimizer_step_ms": 1.0, "final_test_loss": 1.0,
         "steps_to_target": None}
        for i, s in enumerate(statuses)
    ]).reindex(columns=TRIAL_COLUMNS)
    return rows.astype({c: object for c in rows.columns if rows[c].isna().all()})  # unset columns hold anything


def test_skipped_is_not_a_seed_not_a_failure_and_shows_na():
    from optbench.leaderboard.pages import status_cell
    from optbench.summary import summarize

    row = summarize(_trial_rows(["skipped", "skipped"])).iloc[0]
    assert (row["seeds"], row["ok"], row["failed"], row["skipped"], bool(row["applicable"])) == (0, 0, 0, 2, False)
    assert "n/a" in status_cell(row).html
    mixed = summarize(_trial_rows(["ok", "skipped"])).iloc[0]
    assert (mixed["seeds"], mixed["ok"], bool(mixed["applicable"])) == (1, 1, True)


def test_gate_ignores_skipped_trials():
    import pandas as pd

    from optbench.gate import compare

    base = pd.concat([_trial_rows(["skipped"]), _trial_rows(["ok"]).assign(trial_id="x", task="r")])
    report = compare(base, base.copy())
    assert report.passed and [c.task for c in report.cells] == ["r"]
