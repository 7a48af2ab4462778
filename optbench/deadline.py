"""A hard time limit for one trial.

The runner's own check runs between steps, so a step that hangs (a plugin stuck in `step`, a data loader
that blocks) would never reach it. A real-time interval timer (SIGALRM) interrupts the main thread wherever
Python code runs, including `time.sleep` and waits that Python resumes after a signal, and raises the
runner's time-out exception right there. Signals reach only the main thread, so elsewhere (a thread pool)
the limit falls back to the check between steps; the Ray executor runs trials in its workers' main threads.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def can_interrupt() -> bool:
    """Whether a hard deadline can be armed here (POSIX, main thread)."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def hard_deadline(seconds: float | None, make_exc: Callable[[], BaseException]) -> Iterator[None]:
    """Raise `make_exc()` inside the block once `seconds` of wall time have passed (no-op without a limit)."""
    if not seconds or seconds <= 0 or not can_interrupt():
        yield
        return

    def _fire(signum: int, frame: object) -> None:
        raise make_exc()

    previous = signal.signal(signal.SIGALRM, _fire)
    armed_at = time.monotonic()
    earlier, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if earlier > 0:  # someone else's alarm (e.g. pytest-timeout) was pending: give back what is left
            signal.setitimer(signal.ITIMER_REAL, max(earlier - (time.monotonic() - armed_at), 1e-3))
