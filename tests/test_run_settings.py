"""Settings are checked before anything runs, each with one sentence: time limits that are not finite and
positive, non-finite hyperparameters, worker counts, an unreachable Ray cluster (answered within a deadline),
and SIGTERM, which stops a grid as cleanly as Ctrl-C."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import faultkit
import pytest
from _markers import needs_ray
from click.testing import CliRunner
from optbench.plugins import torch_optim
from optbench.tasks import quadratic

import optbench.registry
from optbench.cli import main
from optbench.store import Store

RUN = ("run", "-t", "quadratic-deep", "-o", "sgd", "--no-metrics")


@pytest.fixture(autouse=True)
def small_registry(monkeypatch):
    plugins = [("torch", torch_optim), ("quadratic", quadratic), ("faultkit", faultkit)]
    monkeypatch.setattr(optbench.registry, "_CACHED", optbench.registry.load_registry(plugins, entry_points=False))


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_error(result, message: str) -> None:
    """Exit 2, no traceback, and exactly the one `error:` line given."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert lines == [f"error: {message}"], result.output


@pytest.mark.parametrize("value, shown", [("nan", "nan"), ("inf", "inf"), ("-1", "-1"), ("0", "0")])
def test_a_trial_timeout_must_be_finite_and_positive(tmp_path, value, shown):
    one_error(invoke(*RUN, "--trial-timeout", value, "--results", str(tmp_path)),
              f"--trial-timeout must be a finite number of seconds above 0, not {shown}.")
    assert not (tmp_path / "trials").exists()  # nothing ran, so nothing wrong counts as done


def test_other_durations_and_counts_are_checked(tmp_path):
    one_error(invoke(*RUN, "--claim-ttl", "0", "--results", str(tmp_path)),
              "--claim-ttl must be a finite number of seconds above 0, not 0.")
    one_error(invoke(*RUN, "--ray-timeout", "inf", "--results", str(tmp_path)),
              "--ray-timeout must be a finite number of seconds above 0, not inf.")
    one_error(invoke(*RUN, "--workers", "0", "--results", str(tmp_path)), "--workers must be at least 1, not 0.")
    one_error(invoke(*RUN, "--torch-threads", "-2", "--results", str(tmp_path)),
              "--torch-threads must be at least 1, not -2.")
    assert not (tmp_path / "trials").exists()


def test_hyperparameters_must_be_finite_unless_the_spec_allows_it(tmp_path):
    one_error(invoke(*RUN, "--hp", "lr=1e999", "--results", str(tmp_path)),
              "--hp lr=inf for optimizer 'sgd' is not a finite number.")
    one_error(invoke(*RUN, "--hp", "sgd.lr=-1e999", "--results", str(tmp_path)),
              "--hp lr=-inf for optimizer 'sgd' is not a finite number.")
    assert not (tmp_path / "trials").exists()
    # clip-sgd's default max_norm is inf: its spec allows a non-finite value there, and the row stores it
    result = invoke("run", "-t", "tiny-quad", "-o", "clip-sgd", "--no-metrics", "--hp", "max_norm=1e999",
                    "--results", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert Store(tmp_path).read().trials["status"].tolist() == ["ok"]


def test_sigterm_stops_the_grid_like_ctrl_c(tmp_path):
    """`term-driver` sends SIGTERM to the driver from inside its trial: a known point, no timing."""
    result = invoke("run", "-t", "tiny-quad", "-o", "term-driver", "-o", "slow-sgd", "--no-metrics",
                    "--results", str(tmp_path))
    assert result.exit_code == 143, result.output
    assert result.output.count("terminated") == 1 and "finished trials are saved" in result.output
    assert "Traceback" not in result.output
    assert list((tmp_path / "trials").iterdir()) == []  # the running trial left no file
    assert list((tmp_path / "claims").iterdir()) == []  # and no claim




@needs_ray
def test_a_closed_ray_port_is_one_sentence_at_once(tmp_path):
    one_error(invoke(*RUN, "--executor", "ray", "--address", "127.0.0.1:1", "--results", str(tmp_path)),
              "could not reach the Ray cluster at '127.0.0.1:1': connecting to 127.0.0.1:1 connection refused.")


@needs_ray
@pytest.mark.slow
def test_a_silent_ray_address_is_given_up_at_the_deadline(tmp_path):
    """A port that accepts connections and never answers: Ray alone retries for many minutes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", RAY_AUTH_MODE="disabled")
        proc = subprocess.run(
            [sys.executable, "-c", "from optbench.cli import main; main()", *RUN,
             "--executor", "ray", "--address", f"127.0.0.1:{port}", "--ray-timeout", "3",
             "--results", str(tmp_path / "res")],
            env=env, capture_output=True, text=True, timeout=300,  # Ray by itself: > 10 minutes
        )
    assert proc.returncode == 2, proc.stderr
    assert f"error: could not reach the Ray cluster at '127.0.0.1:{port}' within 3 s." in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not Path(tmp_path / "res" / "trials").exists() or not any((tmp_path / "res" / "trials").iterdir())


@pytest.mark.parametrize("args, message", [
    (("--trial-timeout", "inf"), "--trial-timeout must be a finite number of seconds above 0, not inf."),
    (("--workers", "0"), "--workers must be at least 1, not 0."),
    (("--seeds", "0"), "--seeds must be at least 1, not 0."),
])
def test_tune_refuses_what_run_refuses_in_the_same_sentence(tmp_path, args, message):
    """One request type, checked by the planner: the commands cannot drift apart (tune used to take inf)."""
    one_error(invoke(*RUN, *args, "--results", str(tmp_path)), message)
    one_error(invoke("tune", "-t", "quadratic-deep", "-o", "sgd", "--budget", "2", *args,
                     "--results", str(tmp_path)), message)
    assert list(tmp_path.iterdir()) == []


def test_the_planner_checks_a_request_whole_without_the_cli(monkeypatch):
    import torch

    from optbench.errors import OptbenchError
    from optbench.plan_request import RunRequest
    from optbench.planner import plan_run

    registry = optbench.registry._CACHED
    request = RunRequest(optimizers=("sgd",), tasks=("quadratic-deep",), seeds=2, hp=("lr=0.1,0.01",),
                         trial_timeout=5.0, alone=("quadratic-*",), no_metrics=True)
    run = plan_run(registry, request)
    assert len(run.trials) == 4 and all(run.runs_alone(t) for t in run.trials)
    assert (run.settings.trial_timeout_s, run.settings.metrics) == (5.0, [])
    assert not plan_run(registry, RunRequest(optimizers=("sgd",), tasks=("quadratic-deep",))).runs_alone(run.trials[0])
    with pytest.raises(OptbenchError, match=r"^--claim-ttl must be a finite number of seconds above 0, not nan\."):
        plan_run(registry, RunRequest(optimizers=("sgd",), tasks=("quadratic-deep",), claim_ttl=float("nan")))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cuda = RunRequest(optimizers=("sgd",), tasks=("quadratic-deep",), device="cuda")
    with pytest.raises(OptbenchError, match="--device cuda was asked for, but torch sees no CUDA device"):
        plan_run(registry, cuda)
    assert len(plan_run(registry, dataclasses.replace(cuda, dry_run=True)).trials) == 1  # a plan only
