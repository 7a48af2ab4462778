"""Harness overhead: the runner's training loop against a hand-written loop on the same task (issue 16.6).

Both loops train the same task instance kind (cnn-digits, smoke preset, same seed, same batches) with the
same optimizer (AdamW, its registered defaults) for the task's budget. The hand-written loop is what a user
writes: zero_grad, loss, backward, step. The runner's loop is `optbench.runner.run_trial` with no metrics and
no interleaved speed measurement; its time is the training loop alone (the evaluations it runs every
`eval_every` steps are timed separately and subtracted, since the hand-written loop has none). The two run
in alternation (hand, runner, runner, hand, ...) in one process with torch threads pinned, and the result
is the median of the per-round ratios (runner ÷ hand) with its order-statistic 95% interval
(optbench/speed.py). Goal: overhead under 3%.

On CUDA the runner synchronises the device three times a step (its step and optimizer-step timers) and reads
the loss after the last of those; the hand-written loop synchronises once, at the end. `--hand-reads-loss`
makes the hand-written loop read `loss.item()` every step (one host sync a step, what any loop that watches its
loss pays), to split the runner's overhead on a GPU into that read and the timing syncs.

Run:  OMP_NUM_THREADS=1 python -m benchmarks.bench_overhead [--rounds 11] [--task cnn-digits] [--device cpu]
      [--hand-reads-loss]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from optbench import runner as runner_mod
from optbench.planner import plan
from optbench.registry import get_registry
from optbench.runner import RunSettings, resolve_device, run_trial, seed_everything
from optbench.speed import median_interval


def hand_loop(registry, task_name: str, preset: str, device: torch.device,
              reads_loss: bool = False) -> tuple[float, int]:
    """Seconds per training step of the plain loop (loss kept on the device and one sync at the end, unless
    `reads_loss`: then the loss is read on the host every step)."""
    seed_everything(0)
    task = registry.task(task_name).spec.build(preset, 0, device, None)
    spec = registry.optimizer("adamw").spec
    params = task.parameters()
    opt = spec.build(params, **dict(spec.defaults))
    stream = task.batches()
    task.train()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(task.budget):
        batch = next(stream)
        opt.zero_grad(set_to_none=True)
        loss = task.loss(batch)
        loss.backward()
        opt.step()
        if reads_loss:
            loss.item()
    sync()
    return (time.perf_counter() - t0) / task.budget, task.budget


def runner_loop(registry, trial, settings: RunSettings) -> tuple[float, int]:
    """Seconds per training step of the runner's loop, evaluations excluded."""
    spent = {"train": 0.0, "eval": 0.0}
    train, evaluate = runner_mod._TrialRun.train, runner_mod._TrialRun.evaluate

    def timed_train(self):
        t0 = time.perf_counter()
        try:
            return train(self)
        finally:
            spent["train"] += time.perf_counter() - t0

    def timed_eval(self, final):
        t0 = time.perf_counter()
        try:
            return evaluate(self, final)
        finally:
            spent["eval"] += time.perf_counter() - t0

    runner_mod._TrialRun.train, runner_mod._TrialRun.evaluate = timed_train, timed_eval
    try:
        result = run_trial(trial, registry, settings)
    finally:
        runner_mod._TrialRun.train, runner_mod._TrialRun.evaluate = train, evaluate
    if result.row["status"] != "ok":
        raise SystemExit(f"the runner's trial ended {result.row['status']}: {result.row.get('error')}")
    steps = int(result.row["steps"])
    return (spent["train"] - spent["eval"]) / steps, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="cnn-digits")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hand-reads-loss", action="store_true",
                    help="the hand-written loop reads loss.item() every step (a host sync a step on CUDA)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    registry = get_registry()
    device = resolve_device(args.device)
    trial = plan(registry, ["adamw"], [args.task], args.preset, range(1), (), {}, {})[0]
    settings = RunSettings(device=args.device, metrics=[], speed_ref=None)
    print(f"bench_overhead: {args.task}/{args.preset} on {device}, {args.rounds} rounds, torch threads "
          f"{torch.get_num_threads()}, the hand-written loop reads the loss "
          f"{'every step' if args.hand_reads_loss else 'never'}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs", flush=True)
    def hand() -> float:
        return hand_loop(registry, args.task, args.preset, device, args.hand_reads_loss)[0]

    hand()  # warm-up: imports, allocator, data
    runner_loop(registry, trial, settings)
    ratios, hands, runs = [], [], []
    for k in range(args.rounds):
        order = ("hand", "runner") if k % 2 == 0 else ("runner", "hand")
        got = {}
        for side in order:
            got[side] = hand() if side == "hand" else runner_loop(registry, trial, settings)[0]
        hands.append(got["hand"])
        runs.append(got["runner"])
        ratios.append(got["runner"] / got["hand"])
        print(f"  round {k + 1:2d}: hand {got['hand'] * 1e3:7.3f} ms/step  runner {got['runner'] * 1e3:7.3f} "
              f"ms/step  ratio {ratios[-1]:.3f}", flush=True)
    lo, hi = median_interval(ratios)
    med = statistics.median(ratios)
    print(f"runner ÷ hand-written loop: {med:.3f} (95% interval {lo:.3f}–{hi:.3f}); overhead {med - 1:+.1%} "
          f"(goal < +3%); median step hand {statistics.median(hands) * 1e3:.3f} ms, runner "
          f"{statistics.median(runs) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
