"""Does `optbench gate` pass identical code? Real runs, not a fake clock (tests/test_speed.py has that one).

The same grid is run into RUNS fresh result roots, one after another, by the installed `optbench` (the bench
workflow's kind of grid: the `gate` suite at the smoke preset, no metrics). Each root is then gated against the
next (RUNS - 1 gates), and the exit codes are counted: identical code should pass every time. With `--burn K`,
every other run has K busy-looping processes beside it, so consecutive runs see different loads (the case that
made step times taken minutes apart useless). For comparison the script also applies the rule the gate used
before interleaved ratios (a cell fails when its ratio of median optimizer-step times to adamw's, each from
its own trial, grows by more than --speed-tol) to the same pairs of roots.

    OMP_NUM_THREADS=1 python -m benchmarks.gate_repeat [--runs 21] [--burn 2] [-o adamw -o lion ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_OPTIMIZERS = ("adamw", "adam", "sgd", "lion", "lion-ib")


def _burn() -> None:
    while True:
        pass


def _optbench() -> str:
    here = Path(sys.executable).parent / "optbench"
    return str(here) if here.exists() else (shutil.which("optbench") or "optbench")


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _old_rule_fails(base: list[dict], cand: list[dict], tol: float) -> int:
    """Cells the pre-interleaving rule would flag: optimizer_step_ratio (medians from separate trials) grew > tol."""
    key = lambda c: (c["task"], c["preset"], c["optimizer"], c["config_id"])  # noqa: E731
    before = {key(c): c.get("optimizer_step_ratio") for c in base}
    fails = 0
    for c in cand:
        b, a = before.get(key(c)), c.get("optimizer_step_ratio")
        if b and a and b > 0 and a / b - 1 > tol:
            fails += 1
    return fails


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("-o", "--optimizer", action="append")
    ap.add_argument("--suite", default="gate")
    ap.add_argument("--burn", type=int, default=0, help="busy processes beside every other run")
    ap.add_argument("--speed-tol", type=float, default=0.25)
    ap.add_argument("--keep", help="keep the result roots in this folder")
    args = ap.parse_args(argv)
    exe = _optbench()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gate-repeat-"))
    work.mkdir(parents=True, exist_ok=True)
    grid = [a for o in (args.optimizer or DEFAULT_OPTIMIZERS) for a in ("-o", o)]
    print(f"{exe}: {args.runs} runs of {' '.join(grid)} --suite {args.suite} --preset smoke --no-metrics; "
          f"burn {args.burn} on odd runs; load average {_load()}", flush=True)
    roots = []
    for i in range(args.runs):
        burners = [mp.Process(target=_burn, daemon=True) for _ in range(args.burn if i % 2 else 0)]
        for b in burners:
            b.start()
        t0 = time.perf_counter()
        root = work / f"run{i:02d}"
        proc = subprocess.run([exe, "run", *grid, "--suite", args.suite, "--preset", "smoke", "--no-metrics",
                               "--results", str(root)], capture_output=True, text=True)
        for b in burners:
            b.terminate()
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            raise SystemExit(f"run {i} failed (exit {proc.returncode})")
        roots.append(root)
        print(f"run {i:2d}: {time.perf_counter() - t0:5.1f} s, burn {len(burners)}, load {_load()}", flush=True)
    passes, old_flags = 0, 0
    summaries = {}
    for root in roots:
        out = subprocess.run([exe, "results", "--json", "--results", str(root)], capture_output=True, text=True,
                             check=True)
        summaries[root] = json.loads(out.stdout)
    for base, cand in zip(roots, roots[1:], strict=False):
        gate = subprocess.run([exe, "gate", "--baseline", str(base), "--candidate", str(cand), "--speed-tol",
                               str(args.speed_tol)], capture_output=True, text=True)
        ok = gate.returncode == 0
        passes += ok
        n_old = _old_rule_fails(summaries[base], summaries[cand], args.speed_tol)
        old_flags += n_old > 0
        verdict = "pass" if ok else f"FAIL (exit {gate.returncode})"
        print(f"gate {base.name} -> {cand.name}: {verdict}; "
              f"old rule flags {n_old} cell(s)", flush=True)
        if not ok:
            print(gate.stdout[-1500:])
    gates = len(roots) - 1
    print(f"identical code: the gate passed {passes} of {gates}; the old rule (ratios from separate trials) "
          f"would have failed {old_flags} of {gates}; load average {_load()}; roots in {work}")
    return 0 if passes == gates else 1


if __name__ == "__main__":
    sys.exit(main())
