"""Forking after OpenMP: GNU libgomp (the OpenMP runtime torch's Linux wheels bundle) keeps the thread pool of
a parallel region alive for the next one and registers no fork handler. A child forked after its parent ran
a multi-threaded region inherits a pool whose threads do not exist in the child, and its first parallel
region with more than one thread waits for them forever. (LLVM's libomp and Intel's libiomp5 handle fork.)

OpenMP 5.0's `omp_pause_resource_all(omp_pause_hard)` frees the calling thread's pool; the next parallel
region builds a new one. Only the forking thread exists in the child, so releasing that thread's pool right
before the fork is enough. `release_openmp()` does so for every libgomp loaded in this process and says
whether it could: where it cannot (no such call in an old libgomp, or the loaded libraries cannot be listed),
the caller must not fork a child that will run parallel regions with more than one thread.
"""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path

#: omp_pause_resource_t's omp_pause_hard (OpenMP 5.0): free the runtime's resources, threads included
_OMP_PAUSE_HARD = 2


def loaded_libgomp() -> list[str] | None:
    """Paths of the GNU OpenMP runtimes loaded in this process (torch bundles one; numpy or scikit-learn may
    load another); None where the process's mappings cannot be read (not Linux)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = set()
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)  # address, perms, offset, device, inode, path (when file-backed)
        if len(fields) == 6 and Path(fields[5].strip()).name.startswith("libgomp"):
            paths.add(fields[5].strip())
    return sorted(paths)


@cache
def _pause_call(path: str):
    """`omp_pause_resource_all` of the already loaded library at `path`, or None where it has none."""
    try:
        fn = ctypes.CDLL(path).omp_pause_resource_all
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def release_openmp() -> bool:
    """Free the calling thread's libgomp thread pools, so that a child forked next starts with none. True when
    no pool survives into such a fork (none loaded, or each released); False when that cannot be known."""
    paths = loaded_libgomp()
    if paths is None:
        return False
    for path in paths:
        pause = _pause_call(path)
        if pause is None or pause(_OMP_PAUSE_HARD) != 0:
            return False
    return True
