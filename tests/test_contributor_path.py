"""The contributor path end to end: `optbench new-plugin` writes a package that pip installs, that appears in
`optbench list`, passes `optbench check-plugin` and its own generated tests, runs in `optbench run`, and whose
slowed release fails `optbench gate`.

The package is pip-installed with `--target` into a temporary directory that the subprocesses see on
PYTHONPATH: a real install (wheel build, dist-info, entry point), invisible to the shared venv and to every
other test, and "uninstalled" by deleting the directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from optbench.plugins import torch_optim
from optbench.tasks import quadratic

from optbench import OptimizerSpec, hookimpl
from optbench.registry import load_registry
from optbench.scaffold import PluginNames

NAME = "contrib-demo-sgd"


def _env(site: Path) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _optbench(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "optbench.cli", *args], cwd=cwd, env=_env(site),
                          capture_output=True, text=True, timeout=300)


def _pip_install(pkg: Path, site: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(pkg)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (site / f"optbench_{NAME.replace('-', '_')}-0.1.0.dist-info" / "entry_points.txt").exists()


@pytest.mark.slow
def test_generated_plugin_installs_conforms_runs_and_its_slowed_release_fails_the_gate(cli, tmp_path):
    pkg = tmp_path / "pkg"
    result = cli("new-plugin", NAME, "--dir", str(pkg))
    assert result.exit_code == 0, result.output
    names = PluginNames.of(NAME)
    module = pkg / "src" / names.module / "optimizer.py"
    assert f'{NAME} = "{names.module}.optimizer"' in (pkg / "pyproject.toml").read_text()

    site = tmp_path / "site"
    _pip_install(pkg, site)

    listed = _optbench(site, "list", "optimizers", "contrib-*", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert NAME in listed.stdout and names.distribution in listed.stdout

    checked = _optbench(site, "check-plugin", NAME, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{NAME}: conforms" in checked.stdout and "FAIL" not in checked.stdout

    own_tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pkg / "tests")],
                               cwd=pkg, env=_env(site), capture_output=True, text=True, timeout=300)
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr
    assert "2 passed" in own_tests.stdout

    run_args = ("run", "-o", NAME, "-o", "adamw", "-t", "quadratic-well-conditioned", "--no-metrics")
    base = _optbench(site, *run_args, "--results", str(tmp_path / "base"), cwd=tmp_path)
    assert base.returncode == 0, base.stderr
    assert "2 ok" in base.stderr

    # the slowed release: the same package with a sleep in step(), re-installed
    source = module.read_text()
    anchor = "        return loss\n"
    assert source.count(anchor) == 1
    slowed = source.replace("import torch\n", "import time\n\nimport torch\n", 1)
    module.write_text(slowed.replace(anchor, "        time.sleep(0.002)  # the regression\n" + anchor))
    slow_site = tmp_path / "site-slow"
    _pip_install(pkg, slow_site)
    cand = _optbench(slow_site, *run_args, "--results", str(tmp_path / "cand"), cwd=tmp_path)
    assert cand.returncode == 0, cand.stderr

    gate = cli("gate", "--baseline", str(tmp_path / "base"), "--candidate", str(tmp_path / "cand"))
    assert gate.exit_code == 1, gate.output
    assert "gate failed: 1 regression" in gate.output


def test_new_plugin_refuses_bad_names_and_overwrites(cli, tmp_path):
    assert cli("new-plugin", "My_SGD", "--dir", str(tmp_path / "a")).exit_code == 2
    assert cli("new-plugin", "2nd-sgd", "--dir", str(tmp_path / "b")).exit_code == 2
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    result = cli("new-plugin", "fine-name", "--dir", str(tmp_path / "taken"))
    assert result.exit_code == 2 and "never overwrites" in result.output
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["keep.txt"]


class _NaNStep(torch.optim.SGD):
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.data.fill_(float("nan"))


class _BrokenPlugin:
    @hookimpl
    def optbench_register_optimizers(self):
        return [OptimizerSpec("nan-sgd", lambda params, lr: _NaNStep(params, lr=lr), defaults={"lr": 0.1})]


def test_check_plugin_fails_a_broken_optimizer_and_names_unknown_ones(cli, monkeypatch):
    import optbench.registry

    plugins = [("torch", torch_optim), ("quadratic", quadratic), ("broken", _BrokenPlugin())]
    registry = load_registry(plugins, entry_points=False)
    monkeypatch.setattr(optbench.registry, "_CACHED", registry)
    result = cli("check-plugin", "nan-sgd")
    assert result.exit_code == 1
    assert "FAIL" in result.output and "check(s) failed" in result.output
    assert cli("check-plugin", "adamw").exit_code == 0
    unknown = cli("check-plugin", "adamv")
    assert unknown.exit_code == 2 and "adamw" in unknown.output
