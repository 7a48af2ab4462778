"""Training throughput of a classification task: median step time, images/s, and what the on-device data
path (cut + crop/flip + normalise) costs next to it, measured side by side in one process.

    python -m benchmarks.vision_throughput --task resnet-cifar10 --preset full --device cuda --amp bf16 \
        --channels-last --steps 300

Synthetic data (nothing to download); the optimizer is torch.optim.AdamW so the number is the task's, not an
optimizer's. Timings are device-synchronised.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="resnet-cifar10")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--amp", default=None, choices=["bf16"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))

    from optbench.registry import load_registry

    spec = load_registry().task(args.task).spec
    task = spec.build(args.preset, 0, device, None, synthetic=True, amp=args.amp, channels_last=args.channels_last)
    opt = torch.optim.AdamW(task.parameters(), lr=1e-3)
    stream = task.batches()
    task.train()
    data_times, step_times = [], []
    for i in range(args.warmup + args.steps):
        _sync(device)
        t0 = time.perf_counter()
        batch = next(stream)
        _sync(device)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        task.loss(batch).backward()
        opt.step()
        _sync(device)
        t2 = time.perf_counter()
        if i >= args.warmup:
            data_times.append(t1 - t0)
            step_times.append(t2 - t1)
    step, data = statistics.median(step_times), statistics.median(data_times)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    Console().print(
        f"{args.task}/{args.preset} on {name}, batch {task.batch_size}, amp={args.amp}, "
        f"channels_last={args.channels_last}: step {1e3 * step:.2f} ms (median of {args.steps}), "
        f"{task.batch_size / (step + data):,.0f} images/s, data path {1e3 * data:.3f} ms/batch "
        f"({100 * data / (step + data):.1f}% of a step)"
    )


if __name__ == "__main__":
    main()
