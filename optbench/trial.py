"""A trial is one (task, preset, optimizer, configuration, seed) cell; its id is a stable hash of those.

The configuration is the hyperparameters plus the learning-rate schedule (optbench/config.py). A trial run
for a tuning study also names the study and its role in it ("search" or "final"), so a study's trials never
collide with a plain `optbench run` of the same configuration. Fields left at their defaults are kept out of
the hash, so trials planned before they existed keep their ids (and resume still finds them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from optbench import SUITE_VERSION
from optbench.config import CONSTANT as CONSTANT_SCHEDULE
from optbench.config import canonical_json, config_id, normalise_schedule

__all__ = ["Trial", "canonical_json"]


@dataclass(frozen=True)
class Trial:
    task: str
    preset: str
    optimizer: str
    hparams: dict[str, Any]
    seed: int
    #: task options that change the data (e.g. synthetic=True), part of the identity
    options: dict[str, Any] = field(default_factory=dict)
    #: learning-rate schedule (optbench/schedules.py); empty means constant
    schedule: dict[str, Any] = field(default_factory=dict)
    #: the tuning study this trial belongs to, and its role there: "search" or "final" (fresh seeds)
    study: str = ""
    study_role: str = ""

    @property
    def trial_id(self) -> str:
        ident: dict[str, Any] = {
            "task": self.task,
            "preset": self.preset,
            "optimizer": self.optimizer,
            "hparams": self.hparams,
            "seed": self.seed,
            "options": self.options,
            "suite_version": SUITE_VERSION,
        }
        if normalise_schedule(self.schedule) != CONSTANT_SCHEDULE:
            ident["schedule"] = normalise_schedule(self.schedule)
        if self.study:
            ident["study"], ident["study_role"] = self.study, self.study_role
        return hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:16]

    @property
    def config_id(self) -> str:
        return config_id(self.optimizer, self.hparams, self.schedule)

    @property
    def label(self) -> str:
        return f"{self.optimizer} on {self.task}/{self.preset} seed {self.seed}"
