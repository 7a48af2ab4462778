"""A trial is one (task, preset, optimizer, hparams, seed) cell; its id is a stable hash of those."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from optbench import SUITE_VERSION


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Trial:
    task: str
    preset: str
    optimizer: str
    hparams: dict[str, Any]
    seed: int
    #: task options that change the data (e.g. synthetic=True), part of the identity
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def trial_id(self) -> str:
        ident = {
            "task": self.task,
            "preset": self.preset,
            "optimizer": self.optimizer,
            "hparams": self.hparams,
            "seed": self.seed,
            "options": self.options,
            "suite_version": SUITE_VERSION,
        }
        return hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.optimizer} on {self.task}/{self.preset} seed {self.seed}"
