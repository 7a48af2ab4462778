"""The declarative parts a plugin hands to optbench: optimizers, metrics and tasks.

Specs are plain frozen dataclasses so that a third-party package can build them without touching any
engine internals; the engine only ever reads them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported by whoever builds a model, not by `optbench --help`
    import torch

NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class Needs(str, enum.Enum):
    """What `optimizer.step(closure)` relies on the runner to provide.

    The runner always evaluates the loss at the current iterate before calling `step`; for every kind but
    `LOSS_ONLY` it has also back-propagated, so `p.grad` holds the gradient there. `step` then receives a
    closure `closure(backward=True, create_graph=False, sampled_labels=False) -> loss` that zeroes the
    gradients and re-evaluates loss (and gradients) at the *current* parameters on the same batch.
    """

    GRADIENT = "gradient"  # plain gradients; step() gets no closure (torch-style steps would re-run it: 2x passes)
    CLOSURE = "closure"  # re-evaluates loss and gradients at perturbed points (SAM, GAM, Entropy-SGD)
    HESSIAN = "hessian"  # gradients built with create_graph=True so step() can take HVPs (Sophia-H)
    SAMPLED_LABELS = "sampled-labels"  # closure(sampled_labels=True) uses labels sampled from the model
    LOSS_ONLY = "loss-only"  # zeroth order: no backward pass at all


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer a plugin offers. `build(params, **hparams)` returns a `torch.optim.Optimizer`."""

    name: str
    build: Callable[..., torch.optim.Optimizer]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    search_space: Mapping[str, Any] = field(default_factory=dict)
    needs: Needs = Needs.GRADIENT
    wants_model: bool = False  # build() also receives model=<nn.Module> (layer hooks, e.g. AdaFisher)
    paper: str = ""
    summary: str = ""


class MetricWhen(str, enum.Enum):
    EVAL = "eval"  # at every metric evaluation point and at the end
    FINAL = "final"  # at the end of the trial only


#: the value types a declared column may have (Parquet/arrow types of the same names)
COLUMN_DTYPES = ("float64", "int64", "string", "bool")
COLUMN_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class ColumnSpec:
    """A column a metric adds to the trials table, and how results and the leaderboard should show it.

    Declaring it is what lets a third-party metric appear in `optbench results`, the leaderboard and the
    gate without the engine knowing its name.
    """

    name: str  # snake_case; a key of the metric's compute() result
    dtype: str = "float64"
    unit: str = ""
    better: str = ""  # "min", "max" or "" (no direction: shown, never ranked)
    description: str = ""
    short: str = ""  # a table header of a few characters; the name when empty

    def __post_init__(self) -> None:
        if not COLUMN_NAME_PATTERN.match(self.name):
            raise ValueError(f"column name {self.name!r} is not snake_case (lowercase letters, digits and '_')")
        if self.dtype not in COLUMN_DTYPES:
            raise ValueError(f"column {self.name!r} has dtype {self.dtype!r}; use one of {', '.join(COLUMN_DTYPES)}")
        if self.better not in ("min", "max", ""):
            raise ValueError(f"column {self.name!r} has better={self.better!r}; use 'min', 'max' or ''")

    @property
    def header(self) -> str:
        return self.short or self.name


@dataclass(frozen=True)
class MetricSpec:
    """A measurement taken on a trial's state. `compute(ctx) -> dict[str, float]`.

    Keys of the result that are declared in `columns` become columns of the trials table; every key is
    also kept in the row's `metrics` JSON.
    """

    name: str
    compute: Callable[[MetricContext], Mapping[str, float]]
    when: MetricWhen = MetricWhen.EVAL
    summary: str = ""
    default: bool = True  # computed when the user names no metrics
    columns: tuple[ColumnSpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        if not all(isinstance(c, ColumnSpec) for c in self.columns):
            raise TypeError(f"metric {self.name!r}: columns must be a tuple of optbench.ColumnSpec")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"metric {self.name!r} declares a column twice: {names}")


@dataclass(frozen=True)
class Target:
    """The quality level that time-to-target measures: `split/name` reaching `value`."""

    name: str  # a key of TaskInstance.evaluate(), e.g. "test_loss" or "test_accuracy"
    value: float
    mode: str = "min"  # "min": reached when metric <= value; "max": when metric >= value

    def reached(self, metrics: Mapping[str, float]) -> bool:
        v = metrics.get(self.name)
        if v is None:
            return False
        return v <= self.value if self.mode == "min" else v >= self.value


@dataclass(frozen=True)
class Preset:
    """What a preset is for; the numbers live in the task."""

    description: str
    wants_gpu: bool = False


class TaskInstance:
    """One built task: what the runner trains and measures. Subclass and fill in the abstract parts."""

    #: what the rows say in `dataset`; must contain "synthetic" when the data is synthetic
    dataset: str = ""
    #: training steps for this preset
    budget: int = 100
    #: evaluate quality every this many steps
    eval_every: int = 10
    #: time-to-target threshold, or None
    target: Target | None = None
    #: the model being trained, when there is one (metric plugins and hook-based optimizers use it)
    model: torch.nn.Module | None = None
    #: examples consumed per training step (throughput reporting)
    batch_size: int = 1

    def parameters(self) -> list[torch.Tensor]:
        """The leaf tensors to optimise."""
        if self.model is None:
            raise NotImplementedError
        return [p for p in self.model.parameters() if p.requires_grad]

    def batches(self) -> Iterator[Any]:
        """An endless stream of training batches."""
        raise NotImplementedError

    def loss(self, batch: Any) -> torch.Tensor:
        """Scalar training loss on `batch` at the current parameters."""
        raise NotImplementedError

    def sampled_loss(self, batch: Any) -> torch.Tensor:
        """Loss against labels sampled from the model's own predictive distribution (Sophia-G)."""
        raise NotImplementedError(f"task {type(self).__name__} has no model likelihood to sample labels from")

    def sampled_examples(self, batch: Any) -> int:
        """How many examples `sampled_loss(batch)` averages over: the B in Sophia-G's estimate B * g_hat^2. 1 for
        a summed loss; a task whose sampled loss is a batch mean must return its batch size."""
        return 1

    def evaluate(self) -> dict[str, float]:
        """Quality on held-out data: `test_loss`, and `test_accuracy` where it applies."""
        raise NotImplementedError

    def curvature_loss(self) -> torch.Tensor:
        """Loss on the fixed curvature batch, model in eval mode; differentiable w.r.t. parameters()."""
        raise NotImplementedError

    def exact_hessian_eigenvalues(self) -> torch.Tensor | None:
        """The Hessian's exact spectrum where the task knows it (quadratics); None elsewhere."""
        return None

    def train(self) -> None:
        if self.model is not None:
            self.model.train()

    def eval(self) -> None:
        if self.model is not None:
            self.model.eval()


@dataclass(frozen=True)
class TaskSpec:
    """A task a plugin offers. `build(preset, seed, device, data_dir, **options) -> TaskInstance`.

    Options the engine may pass: `synthetic` (bool: use deterministic synthetic data), `amp` ("bf16" or
    None), `channels_last` (bool). A task ignores options it has no use for.
    """

    name: str
    build: Callable[..., TaskInstance]
    presets: Mapping[str, Preset] = field(
        default_factory=lambda: {"smoke": Preset("seconds on a CPU"), "full": Preset("the real benchmark", True)}
    )
    #: what the task is for: "standard" (real data on a CPU, what the board ranks), "diagnostics" (quadratics,
    #: synthetic data: shown apart, never ranked with standard), "gate" (what CI's regression gate runs),
    #: "deterministic" (no data or gradient noise: results made elsewhere are a quality reference; the gate
    #: workflow checks these against the published leaderboard).
    #: Empty by default: a task joins the headline ranking only by saying so, never by omission.
    suites: tuple[str, ...] = ()
    #: options the task gets when it runs as part of a suite, e.g. {"diagnostics": {"synthetic": True}} for a
    #: dataset task whose real data cannot ship with optbench; rows are labelled by the task's `dataset`
    suite_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    summary: str = ""
    paper: str = ""


@dataclass
class MetricContext:
    """What a metric sees: the trained state, the curvature batch's loss and a Hessian-vector product."""

    task: TaskInstance
    params: list[torch.Tensor]
    step: int
    device: torch.device
    #: `hvp(vs) -> list[Tensor]`: Hessian of curvature_loss() times vs (same shapes as params)
    hvp: Callable[[list[torch.Tensor]], list[torch.Tensor]]
    #: exact Hessian spectrum where the task has one
    exact_eigenvalues: torch.Tensor | None = None
    #: long-format points a metric wants in the curves table: (split, name, value)
    extra_points: list[tuple[str, str, float]] = field(default_factory=list)
    #: a shared cache so metrics on the same point can reuse work (e.g. one Lanczos run)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> torch.nn.Module | None:
        return self.task.model


def check_name(kind: str, name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"{kind} name {name!r} is not kebab-case (lowercase letters, digits and '-')")


