"""What `optbench list` shows about every registered plugin, cached on disk so that listing does not import
the plugins (and torch with them) each time.

The cache is keyed by the installed `optbench` entry points: each one's distribution and version, plus the
size and modification time of the module it names (so editing an editable install's plugin module refreshes
it). A change the key cannot see (a plugin's summary defined in a module its entry-point module imports) is
picked up by `optbench list --refresh`. Nothing but `list` reads the cache: running anything loads the plugins.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from optbench import hookspecs

KINDS = ("optimizer", "task", "metric")


def cache_dir() -> Path:
    """$OPTBENCH_CACHE_DIR, else $XDG_CACHE_HOME/optbench, else ~/.cache/optbench."""
    if os.environ.get("OPTBENCH_CACHE_DIR"):
        return Path(os.environ["OPTBENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "optbench"


def _module_stamp(module: str) -> str:
    try:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        if origin and os.path.exists(origin):
            st = os.stat(origin)
            return f"{origin}:{st.st_size}:{st.st_mtime_ns}"
    except (ImportError, ValueError):
        pass
    return f"{module}:?"


def installed_key() -> str:
    """A hash of what the registry would load: every entry point, its distribution, version and module file."""
    parts = []
    for ep in sorted(md.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        dist = f"{ep.dist.name}=={ep.dist.version}" if ep.dist is not None else "?"
        parts.append(f"{ep.name}={ep.value}@{dist}#{_module_stamp(ep.module)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def describe(registry: Any) -> dict[str, Any]:
    """The listing of a loaded registry: per kind, one JSON-ready item per name; plus its load problems."""
    out: dict[str, Any] = {kind: [] for kind in KINDS}
    for kind in KINDS:
        for name in registry.names(kind):
            r = registry.get(kind, name)
            item = {"name": r.name, "plugin": r.plugin, "distribution": r.distribution, "version": r.version,
                    "summary": r.spec.summary}
            if kind == "optimizer":
                item.update(defaults=dict(r.spec.defaults), needs=str(r.spec.needs.value), paper=r.spec.paper)
            elif kind == "task":
                item.update(presets=list(r.spec.presets), suites=list(r.spec.suites))
            else:
                item.update(when=str(r.spec.when.value), default=r.spec.default,
                            columns=[c.name for c in r.spec.columns])
            out[kind].append(item)
    out["problems"] = [str(p) for p in registry.problems]
    return json.loads(json.dumps(out, default=str))  # what the cache will hold, whether read or just made


def _path(key: str) -> Path:
    return cache_dir() / f"catalog-{key}.json"


def read_cached(key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and all(k in data for k in (*KINDS, "problems")) else None


def write_cached(key: str, catalog: dict[str, Any]) -> None:
    """Best effort, atomic: an unwritable cache directory only means the next `list` is slow again."""
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False, encoding="utf-8") as fh:
            json.dump(catalog, fh)
        os.replace(fh.name, _path(key))
        for old in folder.glob("catalog-*.json"):  # one installation, one cache file
            if old.name != _path(key).name:
                old.unlink(missing_ok=True)
    except OSError:
        pass
