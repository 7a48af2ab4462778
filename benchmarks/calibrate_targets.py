"""Calibrates a task's target the AlgoPerf way: what tuned AdamW with linear warm-up + cosine decay reaches on the
validation set at a fixed fraction of the step budget, on every one of several seeds.

Protocol (written into the task docstrings and docs/tasks.md with the numbers this prints):
1. Tune: seed 0 at each learning rate of --lrs (AdamW's other hyperparameters at their registry defaults);
   the lr with the best final validation metric wins.
2. Seeds: the winner on --seeds seeds (seed 0's run is reused).
3. Target: the worst seed's validation metric at the first evaluation at or after --fraction of the budget,
   rounded towards easier (down for accuracy, up for loss) to --digits decimals. Every calibration seed
   therefore reaches the target by that point.

The loop is the runner's own order of operations (seed everything, build the task, build the optimizer from
the registry, scale the lr before each step, evaluate every `eval_every` steps in eval mode), so `optbench run`
with the same lr and schedule meets the target at the same step. Pin threads: OMP_NUM_THREADS=1.

    OMP_NUM_THREADS=1 python benchmarks/calibrate_targets.py mnist1d-cnn --lrs 3e-3,1e-2 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from optbench.registry import load_registry
from optbench.runner import seed_everything


def lr_factor(step: int, budget: int, warmup: float) -> float:
    """Linear warm-up over round(warmup * budget) steps, then cosine decay to 0 at the budget."""
    try:  # the engine's schedule, where it exists, so calibration and runs cannot drift apart
        from optbench.schedules import lr_factor as engine_factor

        return engine_factor({"name": "warmup-cosine", "warmup": warmup, "final": 0.0}, step, budget)
    except ImportError:
        warm = round(warmup * budget)
        if step <= warm:
            return step / warm
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, budget - warm)))


def train(registry, task_name: str, preset: str, seed: int, lr: float, warmup: float) -> dict:
    seed_everything(seed)
    task = registry.task(task_name).spec.build(preset, seed, torch.device("cpu"), None)
    spec = registry.optimizer("adamw").spec
    params = task.parameters()
    opt = spec.build(params, **{**dict(spec.defaults), "lr": lr})
    base = [g["lr"] for g in opt.param_groups]
    stream = task.batches()
    task.train()
    curve: list[tuple[int, dict]] = []
    started = time.perf_counter()
    for step in range(1, task.budget + 1):
        f = lr_factor(step, task.budget, warmup)
        for g, b in zip(opt.param_groups, base, strict=True):
            g["lr"] = b * f
        opt.zero_grad(set_to_none=True)
        loss = task.loss(next(stream))
        loss.backward()
        opt.step()
        if not math.isfinite(float(loss.detach())):
            return {"lr": lr, "seed": seed, "diverged": step, "curve": curve}
        if step % task.eval_every == 0 or step == task.budget:
            task.eval()
            with torch.no_grad():
                curve.append((step, task.evaluate()))
            task.train()
    return {"lr": lr, "seed": seed, "curve": curve, "budget": task.budget, "seconds": time.perf_counter() - started,
            "target": task.target.name if task.target else None, "mode": task.target.mode if task.target else "max"}


def _train_job(job: tuple) -> dict:
    torch.set_num_threads(1)
    return train(load_registry(), *job)


def run_all(jobs: list[tuple], workers: int) -> list[dict]:
    """Each run in its own single-threaded process (results do not depend on how many run at once)."""
    if workers <= 1:
        return [_train_job(j) for j in jobs]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        return pool.map(_train_job, jobs)


def at_fraction(run: dict, metric: str, fraction: float) -> float:
    for step, values in run["curve"]:
        if step >= fraction * run["budget"]:
            return values[metric]
    return run["curve"][-1][1][metric]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task")
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--lrs", default="1e-3,3e-3,1e-2")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fraction", type=float, default=0.75)
    ap.add_argument("--warmup", type=float, default=0.05)
    ap.add_argument("--digits", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the JSON record here")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel, one single-threaded process each")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    lrs = [float(x) for x in args.lrs.split(",")]
    tuning = run_all([(args.task, args.preset, 0, lr, args.warmup) for lr in lrs], args.jobs)
    metric, mode = tuning[0]["target"], tuning[0]["mode"]
    sign = 1 if mode == "max" else -1
    ok = [r for r in tuning if "diverged" not in r]
    best = max(ok, key=lambda r: sign * r["curve"][-1][1][metric])
    runs = [best] + run_all([(args.task, args.preset, s, best["lr"], args.warmup) for s in range(1, args.seeds)],
                            args.jobs)
    reached = [at_fraction(r, metric, args.fraction) for r in runs]
    worst = min(reached) if mode == "max" else max(reached)
    scale = 10 ** args.digits
    target = math.floor(worst * scale) / scale if mode == "max" else math.ceil(worst * scale) / scale
    final = {k: [r["curve"][-1][1].get(k) for r in runs] for k in runs[0]["curve"][-1][1]}
    record = {
        "task": args.task, "preset": args.preset, "metric": metric, "mode": mode, "fraction": args.fraction,
        "schedule": f"warmup-cosine (warmup {args.warmup}, final 0)",
        "tuning": {r["lr"]: (r["curve"][-1][1][metric] if "diverged" not in r else "diverged") for r in tuning},
        "lr": best["lr"], "at_fraction": reached, "target": target, "final": final,
        "seconds_per_trial": [round(r["seconds"], 1) for r in runs],
    }
    text = json.dumps(record, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
