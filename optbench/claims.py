"""Per-trial claims, so two `optbench run` processes on one results root never run the same trial twice.

Atomic writes keep files whole, but two drivers started on the same grid would both run (and both write)
every trial. Before a trial runs, its driver creates `RESULTS/claims/<trial_id>.claim` with O_EXCL (atomic on
local and NFSv3+ file systems) holding its pid, host, start time and expiry; the claim is removed after the
trial's files are written. A claim is stale, and taken over, when its process is dead (same host, pid gone:
kill -9) or when it has expired: the driver renews its claims every third of their lifetime (`ttl_s`), so a
claim outlives its driver (a lost host, whose pid cannot be checked from here) by at most one lifetime.
The lifetime follows the trial time-out (or `--claim-ttl`), so another host waits minutes, not days.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

CLAIMS_DIR = "claims"
#: claim lifetime when neither --claim-ttl nor --trial-timeout says otherwise (renewed while the driver lives)
DEFAULT_TTL_S = 15 * 60.0
#: slack over the trial time-out before a claim expires: the worker's grace to stop, writing the row
TTL_SLACK_S = 120.0


def claim_ttl(trial_timeout_s: float | None, claim_ttl_s: float | None = None) -> float:
    """The claim lifetime: --claim-ttl if given, else the trial time-out plus slack, else the default."""
    if claim_ttl_s is not None:
        return claim_ttl_s
    if trial_timeout_s:
        return trial_timeout_s + TTL_SLACK_S
    return DEFAULT_TTL_S


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

    def __init__(self, root: str | Path, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(root) / CLAIMS_DIR
        self.ttl_s = ttl_s
        self.clock = clock
        self.host = socket.gethostname()
        self.held: dict[str, float] = {}  # trial_id -> when this process last wrote the claim

    def path(self, trial_id: str) -> Path:
        return self.dir / f"{trial_id}.claim"

    def _create(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump(self._content(), fh)
        return True

    def _content(self, started: float | None = None) -> dict:
        now = self.clock()
        return {"pid": os.getpid(), "host": self.host, "started": now if started is None else started,
                "time": now, "expires": now + self.ttl_s}

    def owner(self, trial_id: str) -> dict | None:
        """Who holds the claim (pid, host, time), or None if nobody does or it cannot be read yet."""
        try:
            return json.loads(self.path(trial_id).read_text())
        except (OSError, ValueError):
            return None

    def is_stale(self, info: dict | None, path: Path) -> bool:
        if info is None:  # unreadable: a claim being written right now, or a torn one; judge by its age
            try:
                return self.clock() - path.stat().st_mtime > 60
            except OSError:
                return False
        try:
            expires = float(info.get("expires", float(info.get("time", 0)) + self.ttl_s))
            pid = int(info.get("pid", -1))
        except (TypeError, ValueError):
            return True  # not a claim this code wrote
        if self.clock() > expires:
            return True  # its driver stopped renewing it: dead, hung or cut off
        return info.get("host") == self.host and pid != os.getpid() and not _pid_alive(pid)

    def acquire(self, trial_id: str) -> bool:
        """Claim a trial; False when a live process holds it. A stale claim is broken under a short lock."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(trial_id)
        if self._create(path):
            self.held[trial_id] = self.clock()
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
                self.held[trial_id] = self.clock()
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

    def renew(self) -> int:
        """Push back the expiry of the claims this process holds that are a third of the way to expiring;
        call it often (the executors do, while they wait for trials). Returns how many were renewed."""
        now = self.clock()
        renewed = 0
        for trial_id, written in list(self.held.items()):
            if now - written < self.ttl_s / 3:
                continue
            info = self.owner(trial_id)
            if info is not None and (info.get("pid") != os.getpid() or info.get("host") != self.host):
                continue  # taken over after all (this driver stalled past its expiry): not ours to renew
            path = self.path(trial_id)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text(json.dumps(self._content(started=(info or {}).get("started"))))
                os.replace(tmp, path)
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                continue
            self.held[trial_id] = now
            renewed += 1
        return renewed

    def release(self, trial_id: str) -> None:
        if trial_id in self.held:
            self.held.pop(trial_id)
            with contextlib.suppress(FileNotFoundError):
                self.path(trial_id).unlink()

    def release_all(self) -> None:
        for trial_id in list(self.held):
            self.release(trial_id)
