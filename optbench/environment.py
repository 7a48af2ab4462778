"""Where a trial ran: device, versions, commit, host and start time, recorded in every row."""

from __future__ import annotations

import datetime as dt
import functools
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch


@functools.cache
def git_commit() -> str | None:
    """The commit of the optbench source tree, when it runs from a checkout (None from a wheel)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.cache
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def environment(device: torch.device) -> dict[str, Any]:
    return {
        "device": device_name(device),
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
