"""Per-trial claims, so two `optbench run` processes on one results root never run the same trial twice.

Atomic writes keep files whole, but two drivers started on the same grid would both run (and both write)
every trial. Before a trial runs, its driver creates `RESULTS/claims/<trial_id>.claim` with O_EXCL (atomic on
local and NFSv3+ file systems) holding its pid and host; the claim is removed after the trial's files are
written. A claim whose process is dead (same host, pid gone) is stale, left by kill -9, and is taken over;
a claim from another host is trusted until it is older than `stale_after_s`, since its pid cannot be checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

CLAIMS_DIR = "claims"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


class Claims:
    """Claims under one results root, taken and released by one process."""

    def __init__(self, root: str | Path, stale_after_s: float = 7 * 24 * 3600) -> None:
        self.dir = Path(root) / CLAIMS_DIR
        self.stale_after_s = stale_after_s
        self.host = socket.gethostname()
        self.held: set[str] = set()

    def path(self, trial_id: str) -> Path:
        return self.dir / f"{trial_id}.claim"

    def _create(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump({"pid": os.getpid(), "host": self.host, "time": time.time()}, fh)
        return True

    def owner(self, trial_id: str) -> dict | None:
        """Who holds the claim (pid, host, time), or None if nobody does or it cannot be read yet."""
        try:
            return json.loads(self.path(trial_id).read_text())
        except (OSError, ValueError):
            return None

    def is_stale(self, info: dict | None, path: Path) -> bool:
        if info is None:  # unreadable: a claim being written right now, or a torn one; judge by its age
            try:
                return time.time() - path.stat().st_mtime > 60
            except OSError:
                return False
        if info.get("host") == self.host:
            pid = int(info.get("pid", -1))
            return pid != os.getpid() and not _pid_alive(pid)
        return time.time() - float(info.get("time", 0)) > self.stale_after_s

    def acquire(self, trial_id: str) -> bool:
        """Claim a trial; False when a live process holds it. A stale claim is broken under a short lock."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(trial_id)
        if self._create(path):
            self.held.add(trial_id)
            return True
        if not self.is_stale(self.owner(trial_id), path):
            return False
        # Two processes may find the same stale claim: only the one holding the break lock replaces it.
        lock = path.with_suffix(".break")
        if not self._create(lock):
            with contextlib.suppress(OSError):
                if time.time() - lock.stat().st_mtime > 60:  # a breaker that died mid-way
                    lock.unlink()
            return False
        try:
            if not self.is_stale(self.owner(trial_id), path):
                return False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            if self._create(path):
                self.held.add(trial_id)
                return True
            return False
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()

    def sweep(self) -> int:
        """Remove stale claims left by killed drivers (also those of trials that finished after all)."""
        removed = 0
        for path in self.dir.glob("*.claim") if self.dir.exists() else []:
            trial_id = path.name[: -len(".claim")]
            if trial_id not in self.held and self.is_stale(self.owner(trial_id), path) and self.acquire(trial_id):
                self.release(trial_id)
                removed += 1
        return removed

    def release(self, trial_id: str) -> None:
        if trial_id in self.held:
            self.held.discard(trial_id)
            with contextlib.suppress(FileNotFoundError):
                self.path(trial_id).unlink()

    def release_all(self) -> None:
        for trial_id in list(self.held):
            self.release(trial_id)
