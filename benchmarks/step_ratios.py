"""Print the optimizer-step table: median `step()` ms at 10M parameters in 50 tensors and the ratio to the
fastest torch.optim.AdamW kernel measured in the same run, with the memory-traffic floor for reference.

    python -m benchmarks.step_ratios [--device cpu|cuda] [--rounds 10] [--only 'lion*,fadam'] [--include-bridges]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks import stepbench


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=10, help="timed steps per optimizer (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (state allocation, compile)")
    ap.add_argument("--only", help="comma-separated glob patterns of optimizer names (AdamW always runs)")
    ap.add_argument("--include-bridges", action="store_true", help="also time bridged packages' optimizers")
    args = ap.parse_args(argv)
    if args.only:
        os.environ[stepbench.ENV_SELECT] = args.only
    console = Console(width=max(Console().width, 110))
    candidates, skipped = stepbench.all_candidates(include_bridges=args.include_bridges)
    bandwidth = stepbench.copy_bandwidth(args.device)
    console.print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
                  f"copy bandwidth {bandwidth / 1e9:.1f} GB/s, {stepbench.TOTAL_PARAMS:,} params in "
                  f"{len(stepbench.SHAPES)} tensors, median of {args.rounds} steps after {args.warmup} warm-up")
    rows = []
    with console.status("timing") as status:
        for c in candidates:
            status.update(f"timing {c.name}")
            rows.append(stepbench.measure(c, bandwidth, args.device, args.rounds, args.warmup))
    base = min((m.median_s for m in rows if m.baseline and not math.isnan(m.median_s)), default=float("nan"))
    fastest = next((m.name for m in rows if m.baseline and m.median_s == base), "?")
    table = Table(title=f"optimizer.step() at 10M params; ratio to {fastest} ({base * 1e3:.1f} ms)",
                  title_justify="left")
    for col in ("optimizer", "step ms", "× adamw", "floor ms", "× floor", "state MB", "note"):
        table.add_column(col, justify="left" if col in ("optimizer", "note") else "right", no_wrap=True,
                         overflow="ellipsis")
    for m in rows:
        if m.error:
            table.add_row(escape(m.name), "—", "—", "—", "—", "—", f"[red]failed: {escape(m.error[:80])}[/red]")
            continue
        table.add_row(escape(m.name), f"{m.median_s * 1e3:.1f}", f"{m.median_s / base:.2f}", f"{m.floor_s * 1e3:.1f}",
                      f"{m.median_s / m.floor_s:.1f}", f"{m.state_mb:.0f}", escape(m.note[:60]))
    console.print(table)
    for s in skipped:
        console.print(f"[dim]skipped {s.name}: {s.reason}[/dim]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
