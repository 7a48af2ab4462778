"""Results fixtures for the leaderboard tests: a real `optbench run` on a quadratic, plus hand-made rows for
the edge cases (a diverged seed, an all-failed optimizer with hostile strings, a real-data task, a plugin
whose summary/paper/defaults are hostile, geometry metrics)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from optbench import OptimizerSpec, hookimpl
from optbench.registry import load_registry
from optbench.store import Store

TASK = "quadratic-well-conditioned"
OPTIMIZERS = ("adamw", "sgd")
SEEDS = 2
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_JS = '<img src=x onerror="window.__xss=1">'
HOSTILE_SCRIPT = '</script><script>window.__xss=2;alert("xss")</script>'


def run_real(results: Path) -> None:
    """Two optimizers, two seeds, one quadratic, through the real CLI (in-process, no metrics plugins needed)."""
    from optbench.cli import main

    out = CliRunner().invoke(main, ["run", "-t", TASK, *[a for o in OPTIMIZERS for a in ("-o", o)],
                                    "--seeds", str(SEEDS), "--results", str(results)], catch_exceptions=False)
    assert out.exit_code == 0, out.output


_SHARED: dict[str, Path] = {}


def shared_real_results(tmp_path_factory) -> Path:
    """One real run per test session, shared read-only by the leaderboard test modules (copy before changing)."""
    if "real" not in _SHARED:
        path = tmp_path_factory.mktemp("lb-real") / "results"
        run_real(path)
        _SHARED["real"] = path
    return _SHARED["real"]


def row(**fields: Any) -> dict[str, Any]:
    """A hand-made trials row; unspecified columns stay null, as for a task that cannot fill them."""
    base = {"run_id": "hand", "task": "hand-task", "preset": "smoke", "dataset": "synthetic-quadratic",
            "synthetic": True, "optimizer": "adamw", "plugin": "optbench", "hparams": "{}", "options": "{}",
            "seed": 0, "status": "ok", "steps": 100, "budget": 100, "device": "cpu: test-machine",
            "started_at": "2026-11-23T09:00:00+00:00", "step_time_ms": 1.0, "optimizer_step_ms": 0.5}
    base.update(fields)
    base.setdefault("trial_id", f"{base['task']}-{base['optimizer']}-{base['seed']}".replace("/", "_"))
    return base


def write_rows(results: Path, rows: list[dict[str, Any]], curves: dict[str, list[dict]] | None = None) -> None:
    store = Store(results)
    for r in rows:
        store.write(r, (curves or {}).get(r["trial_id"], []))


def add_edge_rows(src: Path, dst: Path) -> None:
    """Copy the real results and add the edge cases."""
    shutil.copytree(src, dst)
    real = Store(src).read().trials
    template = real[(real["optimizer"] == "sgd") & (real["seed"] == 0)].iloc[0].to_dict()
    template = {k: (None if isinstance(v, float) and v != v else v) for k, v in template.items()}
    template.update(config_id=None, config=None)  # derived from each row's own hparams (as for older rows)
    diverged = {**template, "trial_id": "diverged-sgd-seed9", "seed": 9, "status": "diverged", "diverged_step": 17,
                "error": "loss became inf at step 17", "final_test_loss": None, "final_train_loss": None,
                "steps_to_target": None, "time_to_target_s": None}
    evil = {**template, "trial_id": "hostile-0", "optimizer": HOSTILE, "status": "failed", "plugin": HOSTILE_JS,
            "error": HOSTILE_SCRIPT, "hparams": '{"lr": "' + HOSTILE_JS.replace('"', '\\"') + '"}',
            "final_test_loss": None, "final_train_loss": None, "steps_to_target": None, "time_to_target_s": None}
    plugin_row = {**template, "trial_id": "evil-opt-0", "optimizer": "evil-opt", "plugin": "evil-dist",
                  "hparams": '{"lr": 0.1, "note": "' + HOSTILE.replace('"', '\\"') + '"}',
                  "sharpness": 9.5, "entropy_gap": 0.25, "final_train_loss": 0.5, "final_test_loss": 0.75}
    real_data = row(task="tiny-real", dataset="tiny-real-data", synthetic=False, optimizer="adamw",
                    final_test_loss=0.4, final_train_loss=0.3, final_test_accuracy=0.91, sharpness=3.0,
                    entropy_gap=0.1)
    write_rows(dst, [diverged, evil, plugin_row, real_data])


class EvilPlugin:
    """A registered plugin (kebab-case name, as registration demands) with hostile summary, paper and defaults."""

    @hookimpl
    def optbench_register_optimizers(self):
        import torch

        return [OptimizerSpec(name="evil-opt", build=lambda params, **hp: torch.optim.SGD(params, lr=0.1),
                              defaults={"lr": 0.1, "note": HOSTILE_SCRIPT}, summary=HOSTILE_JS,
                              paper="javascript:alert(1)//" + HOSTILE)]


def evil_registry():
    """Our torch optimizers plus the hostile plugin (no entry points: loading every installed task is slow)."""
    from optbench.plugins import torch_optim

    return load_registry(extra_plugins=[("torch", torch_optim), ("evil-plugin", EvilPlugin())], entry_points=False)
