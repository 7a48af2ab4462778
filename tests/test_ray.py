"""The Ray executor: same trials, same rows as the local executor; workers write their own files; a hung
trial times out inside its worker; a missing `ray` is one sentence. Runs on a local `ray.init(num_cpus=2)`
with a temp dir of its own, no dashboard and no auth token, shut down at the end."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import faultkit
import pytest
from _markers import needs_ray
from optbench.plugins import lion, torch_optim
from optbench.tasks import quadratic

from optbench.errors import OptbenchError
from optbench.executor import run_local
from optbench.planner import plan
from optbench.registry import load_registry
from optbench.runner import RunSettings
from optbench.store import Store

#: columns that depend only on the trial (not on the process, host or clock) and must match across executors
SAME = ["trial_id", "task", "preset", "dataset", "synthetic", "optimizer", "hparams", "options", "seed", "status",
        "error", "diverged_step", "steps", "budget", "steps_to_target", "target_name", "target_value",
        "final_train_loss", "final_test_loss", "final_test_accuracy", "forward_passes", "backward_passes",
        "optimizer_state_mb"]




@pytest.fixture(scope="module")
def registry():
    plugins = [("torch", torch_optim), ("lion", lion), ("quadratic", quadratic), ("faultkit", faultkit)]
    return load_registry(plugins, entry_points=False)


@pytest.fixture(scope="module")
def local_ray():
    import ray

    base = tempfile.mkdtemp(prefix="obray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    site = faultkit.install(Path(base) / "site")
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "PYTHONPATH", "OMP_NUM_THREADS")}
    # Workers inherit this environment: no auth token under $HOME, and the faultkit plugin on their path
    # as an installed distribution (they rebuild the registry from entry points).
    os.environ.update(RAY_AUTH_MODE="disabled", OMP_NUM_THREADS="1",
                      PYTHONPATH=os.pathsep.join([str(site), *sys.path[1:]]))
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=os.path.join(base, "ray"), log_to_driver=False,
             logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(base, ignore_errors=True)


@needs_ray
@pytest.mark.slow
def test_ray_rows_equal_local_rows_and_faults_end_as_rows(local_ray, registry, tmp_path):
    from optbench.executor_ray import run_ray

    trials = (plan(registry, ["slow-sgd", "lion"], ["tiny-quad"], "smoke", range(2))
              + plan(registry, ["sgd"], ["quadratic-well-conditioned"], "smoke", range(1)))
    settings = RunSettings(metrics=[])
    ray_store, local_store = Store(tmp_path / "ray"), Store(tmp_path / "local")
    outcome = run_ray(trials, ray_store, registry, settings)
    assert outcome.statuses == {"ok": 5} and outcome.busy == []
    run_local(trials, local_store, registry, settings)
    by_ray = ray_store.read(with_curves=True)
    by_local = local_store.read(with_curves=True)
    assert by_ray.problems == [] and len(by_ray.trials) == 5
    a = by_ray.trials[SAME].sort_values("trial_id").reset_index(drop=True)
    b = by_local.trials[SAME].sort_values("trial_id").reset_index(drop=True)
    assert a.equals(b), (a.compare(b) if a.shape == b.shape else (a, b))
    assert by_ray.trials["plugin"].str.startswith("optbench").all()  # workers found plugins by entry point
    assert len(by_ray.curves) == len(by_local.curves)
    assert list((tmp_path / "ray" / "claims").iterdir()) == []

    resumed = run_ray(trials, ray_store, registry, settings)  # resume: nothing left to do
    assert resumed.ran == [] and len(resumed.skipped) == 5

    hung = plan(registry, ["hang-step", "raise-step"], ["tiny-quad"], "smoke", range(1))
    outcome = run_ray(hung, Store(tmp_path / "faults"), registry, RunSettings(metrics=[], trial_timeout_s=1.5))
    assert outcome.statuses == {"timeout": 1, "failed": 1}
    rows = Store(tmp_path / "faults").read().trials.set_index("optimizer")
    assert "--trial-timeout 1.5 s" in rows.loc["hang-step", "error"]
    assert "broke on purpose" in rows.loc["raise-step", "error"]


def test_missing_ray_is_one_sentence(monkeypatch, registry, tmp_path):
    from optbench.executor_ray import run_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    trials = plan(registry, ["sgd"], ["tiny-quad"], "smoke", range(1))
    with pytest.raises(OptbenchError, match=r"needs the `ray` package") as info:
        run_ray(trials, Store(tmp_path), registry, RunSettings(metrics=[]))
    assert "pip install 'optbench[ray]'" in info.value.hint
    assert not (tmp_path / "trials").exists()
