"""What Optuna adds to each trial of `optbench tune`, as a fraction of a cnn-digits trial (not a timed test).

Per study trial, `optbench tune` asks the sampler for a configuration (TPE over the optimizer's declared space),
records the driver in the trial's attributes, and tells the study the validation value; the storage is the same
journal file in the results directory. This script times exactly those calls for a whole study of `--budget`
trials (so TPE's cost at the last, largest history is included), interleaved in one process with real
cnn-digits trials (smoke preset, AdamW, no metric plugins) run by `run_trial`, and prints the ratio of the
mean Optuna time per study trial to the median cnn-digits trial time. The issue's bar: under 1 %.

Run: OMP_NUM_THREADS=1 python benchmarks/optuna_overhead.py [--rounds 3] [--budget 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from optbench.registry import get_registry
from optbench.runner import RunSettings, run_trial
from optbench.trial import Trial
from optbench.tuning import _driver, _sampler, hparams_for, journal_storage, parse_space


def optuna_study_seconds(root: Path, name: str, space: dict, defaults: dict, budget: int) -> list[float]:
    """Seconds of Optuna work per study trial over one study, as Tuner.run does it: the study is created (or
    loaded) once, its cost spread over the budget; then per trial: ask, set the driver attribute, tell."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = parse_space("adamw", space, defaults)
    t0 = time.perf_counter()
    study = optuna.create_study(study_name=name, storage=journal_storage(root), load_if_exists=True,
                                direction="maximize", sampler=_sampler("tpe", dists, budget, 0))
    opening = time.perf_counter() - t0
    per_trial = []
    for i in range(budget):
        t0 = time.perf_counter()
        ft = study.ask(dict(dists))
        ft.set_user_attr("driver", _driver())
        hparams_for(ft.params, defaults)
        value = 0.9 + 0.01 * ((i * 7) % 5)  # a stand-in validation accuracy; TPE's work does not depend on it
        study.tell(ft.number, value)
        study.get_trials(deepcopy=False)  # the budget check Tuner.run makes before each ask
        per_trial.append(time.perf_counter() - t0 + opening / budget)
    return per_trial


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=16)
    args = parser.parse_args()
    registry = get_registry()
    spec = registry.optimizer("adamw").spec
    settings = RunSettings(metrics=[])
    trial_s, optuna_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            t0 = time.perf_counter()
            row = run_trial(Trial("cnn-digits", "smoke", "adamw", dict(spec.defaults), r), registry, settings).row
            trial_s.append(time.perf_counter() - t0)
            assert row["status"] == "ok", row.get("error")
            optuna_s.extend(optuna_study_seconds(Path(tmp), f"bench-{r}", dict(spec.search_space),
                                                 dict(spec.defaults), args.budget))
    trial = statistics.median(trial_s)
    mean_o, max_o = statistics.fmean(optuna_s), max(optuna_s)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cnn-digits smoke trial (adamw, no metrics): median {trial:.2f} s over {args.rounds} "
          f"(min {min(trial_s):.2f}, max {max(trial_s):.2f})")
    print(f"Optuna per study trial (TPE, journal file, {args.budget}-trial studies x {args.rounds}): "
          f"mean {1e3 * mean_o:.1f} ms, max {1e3 * max_o:.1f} ms")
    print(f"overhead: mean {100 * mean_o / trial:.3f} % of a trial (max {100 * max_o / trial:.3f} %); "
          f"bar: < 1 %  [1-min load average {load:.1f}]")


if __name__ == "__main__":
    main()
