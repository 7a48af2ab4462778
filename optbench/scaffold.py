"""`optbench new-plugin NAME [--kind optimizer|task|metric]`: writes a ready-to-install plugin package.

The package registers through the `optbench` entry-point group exactly as our own plugins do, ships one
optimizer (heavy-ball SGD written out, as a starting point to replace) and a test that runs our conformance
kit (`optbench.testing`) plus a hand-computed step. It passes its own test as generated, so an author starts
from green and changes one thing at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from optbench.errors import OptbenchError
from optbench.settings import DEFAULT_SPEED_REFERENCE
from optbench.specs import NAME_PATTERN


@dataclass(frozen=True)
class PluginNames:
    optimizer: str  # the optimizer's registered name: my-sgd
    distribution: str  # the pip package: optbench-my-sgd
    module: str  # the import package: optbench_my_sgd
    cls: str  # the optimizer class: MySgd

    @classmethod
    def of(cls, name: str) -> PluginNames:
        if not NAME_PATTERN.match(name):
            raise OptbenchError(f"plugin name {name!r} is not kebab-case (lowercase letters, digits and '-').",
                                "Pick a name like my-sgd; it becomes the optimizer's name in `optbench list`.")
        if name[0].isdigit():
            raise OptbenchError(f"plugin name {name!r} starts with a digit, so it cannot name a Python package.",
                                "Start it with a letter, e.g. sgd-" + name + ".")
        parts = name.split("-")
        return cls(name, f"optbench-{name}", "optbench_" + "_".join(parts), "".join(p.capitalize() for p in parts))


def _files(n: PluginNames) -> dict[str, str]:
    return {
        "pyproject.toml": f'''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{n.distribution}"
version = "0.1.0"
description = "The {n.optimizer} optimizer for the optbench benchmark suite"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["optbench>=0.1", "torch>=2.4"]

[project.optional-dependencies]
test = ["pytest>=8"]

# This line is the whole registration: optbench finds every plugin in the `optbench` entry-point group.
[project.entry-points.optbench]
{n.optimizer} = "{n.module}.optimizer"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
''',
        "README.md": f'''\
# {n.distribution}

The `{n.optimizer}` optimizer as an optbench plugin (entry-point group `optbench`).

```bash
pip install -e '.[test]'        # registers `{n.optimizer}` with optbench
pytest                          # the optbench conformance kit + your own numerical tests
optbench check-plugin {n.optimizer}
optbench run -o {n.optimizer} -o {DEFAULT_SPEED_REFERENCE} --seeds 3 --results results
optbench results --results results
```
''',
        f"src/{n.module}/__init__.py": f'''\
"""The {n.optimizer} optimizer for optbench."""

from {n.module}.optimizer import {n.cls}

__all__ = ["{n.cls}"]
''',
        f"src/{n.module}/optimizer.py": f'''\
"""The {n.optimizer} optimizer and its optbench registration.

Replace the update rule in `step` with yours; keep the shape: a torch.optim.Optimizer whose state lives in
`self.state` (so state_dict() round-trips) and whose step() follows PyTorch's closure convention.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import Needs, OptimizerSpec, hookimpl


class {n.cls}(torch.optim.Optimizer):
    """Heavy-ball SGD: buf <- momentum * buf + grad;  p <- p - lr * buf  (Polyak 1964)."""

    def __init__(self, params: Iterable[Any], lr: float = 0.01, momentum: float = 0.9) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {{lr}}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {{momentum}}")
        super().__init__(params, {{"lr": lr, "momentum": momentum}})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(p.grad)
                p.add_(buf, alpha=-group["lr"])
        return loss


def build(params: Iterable[Any], **hparams: Any) -> torch.optim.Optimizer:
    return {n.cls}(params, lr=hparams["lr"], momentum=hparams["momentum"])


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="{n.optimizer}",
            build=build,
            defaults={{"lr": 0.01, "momentum": 0.9}},
            search_space={{"lr": ("log-uniform", 1e-4, 1.0), "momentum": ("uniform", 0.0, 0.99)}},
            needs=Needs.GRADIENT,  # step() only reads p.grad; see optbench.Needs for closures and HVPs
            paper="Polyak 1964, Some methods of speeding up the convergence of iteration methods",
            summary="Heavy-ball SGD (optbench new-plugin template)",
        )
    ]
''',
        f"tests/test_{n.module}.py": f'''\
"""The optbench conformance kit, plus the update rule checked on a step computed by hand.

Add a comparison with a reference implementation (a PyPI package or the paper's rule) here: optbench's
leaderboard only accepts optimizers whose numerics are tested.
"""

import torch

from optbench.testing import assert_optimizer_conforms
from {n.module} import {n.cls}


def test_conforms_to_optbench():
    assert_optimizer_conforms("{n.optimizer}")


def test_two_steps_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = {n.cls}([p], lr=0.1, momentum=0.9)
    for _ in range(2):
        p.grad = torch.tensor([0.5, -1.0])
        opt.step()
    # buf1 = g, buf2 = 0.9 g + g = 1.9 g;  p = p0 - 0.1 (g + 1.9 g) = p0 - 0.29 g
    torch.testing.assert_close(p.detach(), torch.tensor([1.0 - 0.145, -2.0 + 0.29]))
''',
    }


def _task_module(n: PluginNames) -> str:
    return f'''\
"""The {n.optimizer} task and its optbench registration: least squares on synthetic data (labelled so).

Replace the data and model with yours; keep the TaskInstance contract: parameters(), batches(), loss(batch),
evaluate() -> val_loss and test_loss, curvature_loss(), all deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from optbench import Preset, TaskInstance, TaskSpec, hookimpl


class LeastSquares(TaskInstance):
    dataset = "synthetic linear regression"  # "synthetic" in the name labels every row as synthetic

    def __init__(self, seed: int, device: torch.device, n: int = 256, dim: int = 16) -> None:
        g = torch.Generator().manual_seed(seed)
        truth = torch.randn(dim, generator=g)
        x = torch.randn(3 * n, dim, generator=g)
        y = x @ truth + 0.1 * torch.randn(3 * n, generator=g)
        self.train_x, self.val_x, self.test_x = (x[i * n:(i + 1) * n].to(device) for i in range(3))
        self.train_y, self.val_y, self.test_y = (y[i * n:(i + 1) * n].to(device) for i in range(3))
        self.w = torch.zeros(dim, device=device, requires_grad=True)
        self.budget, self.eval_every, self.batch_size = 100, 20, 32
        self._g = torch.Generator().manual_seed(seed + 1)

    def parameters(self) -> list[torch.Tensor]:
        return [self.w]

    def batches(self) -> Iterator[Any]:
        while True:
            idx = torch.randint(len(self.train_y), (self.batch_size,), generator=self._g)
            yield self.train_x[idx], self.train_y[idx]

    def loss(self, batch: Any) -> torch.Tensor:
        x, y = batch
        return ((x @ self.w - y) ** 2).mean()

    def evaluate(self) -> dict[str, float]:
        return {{"val_loss": float(self.loss((self.val_x, self.val_y))),
                "test_loss": float(self.loss((self.test_x, self.test_y)))}}

    def curvature_loss(self) -> torch.Tensor:
        return self.loss((self.train_x[:64], self.train_y[:64]))


def build(preset: str, seed: int, device: torch.device, data_dir: Any = None, **options: Any) -> LeastSquares:
    return LeastSquares(seed, device)


@hookimpl
def optbench_register_tasks() -> list[TaskSpec]:
    return [TaskSpec("{n.optimizer}", build,
                     presets={{"smoke": Preset("100 steps of least squares on synthetic data")}}, suites=(),
                     summary="Least squares on synthetic data (optbench new-plugin template)")]
'''


def _metric_module(n: PluginNames) -> str:
    column = n.module.removeprefix("optbench_")
    return f'''\
"""The {n.optimizer} metric and its optbench registration: the parameters' L2 norm at the end of training.

Replace `compute` with your measurement; every key you declare in `columns` becomes a column of the trials
table, shown by `optbench results` and on the leaderboard with your header and description.
"""

from __future__ import annotations

from optbench import ColumnSpec, MetricContext, MetricSpec, MetricWhen, hookimpl


def compute(ctx: MetricContext) -> dict[str, float]:
    return {{"{column}": float(sum(float((p.detach() ** 2).sum()) for p in ctx.params) ** 0.5)}}


@hookimpl
def optbench_register_metrics() -> list[MetricSpec]:
    return [MetricSpec("{n.optimizer}", compute, MetricWhen.FINAL, "L2 norm of the parameters (template)",
                       columns=(ColumnSpec("{column}", short="|w|", description="L2 norm of the parameters"),))]
'''


def _files_of_kind(n: PluginNames, kind: str) -> dict[str, str]:
    """The optimizer package's files, or its task / metric variant (module, test, entry point, README)."""
    files = _files(n)
    if kind == "optimizer":
        return files
    module = {"task": _task_module, "metric": _metric_module}[kind](n)
    assert_fn = f"assert_{kind}_conforms"
    files.pop(f"src/{n.module}/optimizer.py")
    files[f"src/{n.module}/{kind}.py"] = module
    files[f"src/{n.module}/__init__.py"] = f'"""The {n.optimizer} {kind} for optbench."""\n'
    files[f"tests/test_{n.module}.py"] = (
        f'"""The optbench conformance kit for this {kind}; add tests of your own numbers here."""\n\n'
        f"from optbench.kits import {assert_fn}\n\n\n"
        f"def test_conforms_to_optbench():\n    {assert_fn}(\"{n.optimizer}\")\n")
    files["pyproject.toml"] = files["pyproject.toml"].replace(f'"{n.module}.optimizer"', f'"{n.module}.{kind}"') \
        .replace(f"The {n.optimizer} optimizer", f"The {n.optimizer} {kind}")
    files["README.md"] = (f"# {n.distribution}\n\nThe `{n.optimizer}` {kind} as an optbench plugin (entry-point "
                          f"group `optbench`).\n\n```bash\npip install -e '.[test]'\npytest\n"
                          f"optbench check-plugin {n.optimizer}\n```\n")
    return files


def write_plugin(name: str, directory: Path | None = None, kind: str = "optimizer"
                 ) -> tuple[PluginNames, Path, list[Path]]:
    """Write the package for the optimizer, task or metric `name` under `directory` (default ./optbench-NAME);
    never overwrite."""
    names = PluginNames.of(name)
    root = Path(directory) if directory is not None else Path(names.distribution)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise OptbenchError(f"{root} already exists and is not empty; new-plugin never overwrites files.",
                            "Pass --dir with a new or empty directory.")
    written = []
    try:
        for rel, text in _files_of_kind(names, kind).items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise OptbenchError(f"cannot write the plugin under {root}: {exc.strerror or exc}.",
                            "Pass --dir with a writable directory.") from None
    return names, root, written
