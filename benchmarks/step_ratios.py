"""Print each optimizer's `step()` time as a ratio to torch.optim.AdamW(fused=True), measured interleaved in this
process (reference and candidate steps alternate, round by round) at 10M parameters in 50 tensors, with torch
pinned to one thread by default. The ratio's median and quartiles are reported, plus the machine's load
average before and after: absolute milliseconds on a shared machine mean little, ratios measured side by side
do.

    python -m benchmarks.step_ratios [--device cpu|cuda] [--rounds 20] [--threads 1] [--only 'lion*,fadam*']
        [--max-step-s 5]
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

REFERENCE = "torch-adamw-fused"


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds per optimizer")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (state allocation, compile)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (pinned; default 1)")
    ap.add_argument("--only", help="comma-separated glob patterns of optimizer names")
    ap.add_argument("--include-bridges", action="store_true", help="also time bridged packages' optimizers")
    ap.add_argument("--max-step-s", type=float, default=5.0,
                    help="report an optimizer whose warm-up step takes longer than this as not timed (default 5)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.only:
        os.environ[stepbench.ENV_SELECT] = args.only
    console = Console(width=max(Console().width, 100))
    candidates, skipped = stepbench.all_candidates(include_bridges=args.include_bridges)
    reference = next(c for c in candidates if c.name == REFERENCE)
    patterns = os.environ.get(stepbench.ENV_SELECT)
    others = [c for c in candidates if c.name != REFERENCE and (not c.baseline or not patterns
                                                                 or stepbench._selected(c.name, patterns))]
    load_before = _load()
    console.print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} thread(s), "
                  f"{stepbench.TOTAL_PARAMS:,} params in {len(stepbench.SHAPES)} tensors, {args.rounds} interleaved "
                  f"rounds after {args.warmup} warm-up steps; load average (1/5/15 min) {load_before}, "
                  f"{os.cpu_count()} CPUs")
    rows = []
    with console.status("timing") as status:
        for c in others:
            status.update(f"timing {c.name} against {REFERENCE} (first steps include any compile)")
            r = stepbench.interleaved_ratio(c, reference, args.device, args.rounds, args.warmup, args.max_step_s)
            rows.append(r)
            console.print(f"{escape(r.name)}: {r.median:.2f}× ({r.lo:.2f}–{r.hi:.2f}), load {_load()}"
                          + (f" [red]{escape(r.error[:80])}[/red]" if r.error else ""))
    table = Table(title=f"optimizer.step() / {REFERENCE}.step(), interleaved", title_justify="left")
    for col in ("optimizer", "× adamw", "quartiles", "adamw ms", "note"):
        table.add_column(col, justify="left" if col in ("optimizer", "note") else "right", no_wrap=True,
                         overflow="ellipsis")
    for r in rows:
        if r.error or math.isnan(r.median):
            table.add_row(escape(r.name), "—", "—", "—", f"[red]failed: {escape(r.error[:60])}[/red]")
            continue
        table.add_row(escape(r.name), f"{r.median:.2f}", f"{r.lo:.2f}–{r.hi:.2f}", f"{r.ref_median_s * 1e3:.1f}",
                      escape(r.note[:40]))
    console.print(table)
    console.print(f"load average after: {_load()}")
    for s in skipped:
        console.print(f"[dim]skipped {s.name}: {s.reason}[/dim]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
