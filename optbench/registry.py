"""Finds every optimizer, metric and task through pluggy and the `optbench` entry-point group.

Our own plugins are registered by the same entry points a third party declares, so the registry has one
way in. Each plugin's hooks are called one by one so that a plugin that fails to import or raises is
reported with its name while the others keep working.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata as md
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from optbench import hookspecs
from optbench.errors import OptbenchError, UnknownNameError
from optbench.selection import Selection
from optbench.specs import MetricSpec, OptimizerSpec, TaskSpec, check_name

KINDS = {
    "optimizer": ("optbench_register_optimizers", OptimizerSpec),
    "metric": ("optbench_register_metrics", MetricSpec),
    "task": ("optbench_register_tasks", TaskSpec),
}


@dataclass(frozen=True)
class Registered:
    """A spec and where it came from."""

    spec: Any
    plugin: str  # the entry-point (or registration) name
    distribution: str  # the installed distribution that provides it
    version: str

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class PluginProblem:
    plugin: str
    distribution: str
    message: str

    def __str__(self) -> str:
        if not self.plugin:  # a problem between plugins (a name clash), not of one plugin
            return self.message
        return f"plugin {self.plugin!r} (from {self.distribution}) failed: {self.message}"


@dataclass
class Registry:
    manager: pluggy.PluginManager
    entries: dict[str, dict[str, Registered]] = field(default_factory=lambda: {k: {} for k in KINDS})
    problems: list[PluginProblem] = field(default_factory=list)
    #: names two plugins both registered, by kind: unusable until one is uninstalled (both are named)
    conflicts: dict[str, dict[str, list[Registered]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    #: how load_registry built it (entry_points, extra_plugins): spawned worker processes rebuild it from this
    recipe: tuple[bool, list[tuple[str, object]]] = (True, [])
    _distributions: dict[str, str] = field(default_factory=dict)
    _clash_problems: dict[tuple[str, str], PluginProblem] = field(default_factory=dict)

    # --- lookup -------------------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> Registered:
        table = self.entries[kind]
        if name in table:
            return table[name]
        clash = self.conflicts[kind].get(name)
        if clash:
            raise OptbenchError(_clash_text(kind, name, clash), _CLASH_HINT)
        raise UnknownNameError(kind, name, table)

    def optimizer(self, name: str) -> Registered:
        return self.get("optimizer", name)

    def task(self, name: str) -> Registered:
        return self.get("task", name)

    def metric(self, name: str) -> Registered:
        return self.get("metric", name)

    def names(self, kind: str, pattern: str | None = None) -> list[str]:
        names = sorted(self.entries[kind])
        return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names

    def select(self, kind: str, selection: Selection) -> list[str]:
        """The registered names of `kind` that `selection` keeps, sorted."""
        return [n for n in self.names(kind)
                if selection.keeps(n, self.entries[kind][n].plugin, self.entries[kind][n].distribution,
                                   getattr(self.entries[kind][n].spec, "suites", ()))]

    def suite(self, suite: str) -> list[str]:
        names = [n for n, r in self.entries["task"].items() if suite in r.spec.suites]
        if not names:
            suites = sorted({s for r in self.entries["task"].values() for s in r.spec.suites})
            raise OptbenchError(f"no task belongs to suite {suite!r}.", f"Known suites: {', '.join(suites)}.")
        return sorted(names)

    def trial_finished(self, row: Mapping[str, Any]) -> list[str]:
        """Tell observers about a row; an observer that raises is reported (returned, and kept in
        `problems`), never fatal."""
        found = []
        for impl in self.manager.hook.optbench_trial_finished.get_hookimpls():
            try:
                impl.function(trial=dict(row))
            except Exception as exc:  # noqa: BLE001 - a plugin's bug must not lose the row
                problem = PluginProblem(impl.plugin_name, self._distributions.get(impl.plugin_name, "?"),
                                        f"optbench_trial_finished raised {type(exc).__name__}: {exc}")
                self.problems.append(problem)
                found.append(str(problem))
        return found

    # --- building -----------------------------------------------------------------------------------
    def _collect(self, plugin_name: str, distribution: str, version: str) -> None:
        plugin = self.manager.get_plugin(plugin_name)
        for kind, (hook_name, spec_type) in KINDS.items():
            impls = [i for i in getattr(self.manager.hook, hook_name).get_hookimpls() if i.plugin is plugin]
            for impl in impls:
                try:
                    specs = list(impl.function() or [])
                    for spec in specs:
                        if not isinstance(spec, spec_type):
                            raise TypeError(f"{hook_name} returned {type(spec).__name__}, not {spec_type.__name__}")
                        check_name(kind, spec.name)
                        _check_contract(kind, spec)
                except Exception as exc:  # noqa: BLE001 - report, keep the other plugins
                    self.problems.append(PluginProblem(plugin_name, distribution, f"{hook_name}: {exc}"))
                    continue
                for spec in specs:
                    self._enter(kind, Registered(spec, plugin_name, distribution, version))

    def _enter(self, kind: str, entry: Registered) -> None:
        """Add one spec; a name another plugin already took makes the name unusable and names both plugins,
        while every other name keeps working."""
        table, clashes = self.entries[kind], self.conflicts[kind]
        if entry.name in clashes:
            clashes[entry.name].append(entry)
        elif entry.name in table:
            clashes[entry.name] = [table.pop(entry.name), entry]
        else:
            table[entry.name] = entry
            return
        problem = PluginProblem("", "", _clash_text(kind, entry.name, clashes[entry.name]) + " " + _CLASH_HINT)
        old = self._clash_problems.get((kind, entry.name))
        if old is not None:  # a third plugin with the same name: one problem naming all of them
            self.problems.remove(old)
        self._clash_problems[(kind, entry.name)] = problem
        self.problems.append(problem)

    def _check_hooks(self, plugin: object, plugin_name: str, distribution: str) -> None:
        """What pluggy's check_pending() finds, per plugin: a function marked as an optbench hook whose name
        is no optbench hook (a misspelling registers nothing, so say so)."""
        for hook_name in sorted(vars(self.manager.hook)):
            caller = getattr(self.manager.hook, hook_name)
            if getattr(caller, "spec", True) is not None:
                continue
            if any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()):
                known = ", ".join(sorted(n for n in vars(self.manager.hook)
                                         if getattr(getattr(self.manager.hook, n), "spec", None) is not None))
                self.problems.append(PluginProblem(plugin_name, distribution,
                                                   f"{hook_name} is not an optbench hook (known: {known})"))

    def add_plugin(self, plugin: object, name: str, distribution: str = "local", version: str = "") -> None:
        self.manager.register(plugin, name=name)
        self._distributions[name] = distribution
        self._check_hooks(plugin, name, distribution)
        self._collect(name, distribution, version)


def _check_contract(kind: str, spec: Any) -> None:
    """What can be checked of a spec without running it, so that a broken one is reported at load, not when a
    trial first calls it (`optbench check-plugin NAME` runs the behavioural checks)."""
    from optbench.specs import Preset

    fn = spec.compute if kind == "metric" else spec.build
    if not callable(fn):
        raise TypeError(f"{kind} {spec.name!r}: {'compute' if kind == 'metric' else 'build'} is not callable")
    if kind == "task":
        if not spec.presets or not all(isinstance(p, Preset) for p in spec.presets.values()):
            raise TypeError(f"task {spec.name!r}: presets must be a non-empty mapping of name -> optbench.Preset")
        if isinstance(spec.suites, str) or not all(isinstance(s, str) for s in spec.suites):
            raise TypeError(f"task {spec.name!r}: suites must be a tuple of suite names, not {spec.suites!r}")
    if kind == "optimizer" and not isinstance(spec.defaults, Mapping):
        raise TypeError(f"optimizer {spec.name!r}: defaults must be a mapping of hyperparameter -> value")


_CLASH_HINT = "Uninstall one of the packages, or rename it in one of them."


def _clash_text(kind: str, name: str, entries: list[Registered]) -> str:
    who = " and ".join(f"plugin {e.plugin!r} ({e.distribution})" for e in entries)
    return f"{kind} name {name!r} is registered by {who}, so neither is used."


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_registry(extra_plugins: Iterable[tuple[str, object]] = (), entry_points: bool = True) -> Registry:
    """Build a registry from the installed entry points plus any (name, plugin) pairs given."""
    extra_plugins = list(extra_plugins)
    registry = Registry(_new_manager(), recipe=(entry_points, extra_plugins))
    if entry_points:
        eps = sorted(md.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda e: e.name)
        for ep in eps:
            dist = ep.dist.name if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else ""
            if registry.manager.has_plugin(ep.name):
                continue  # the same distribution seen twice on sys.path
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not take down the others
                registry.problems.append(PluginProblem(ep.name, dist, f"import failed: {exc!r}"))
                continue
            registry.add_plugin(plugin, ep.name, dist, version)
    for name, plugin in extra_plugins:
        registry.add_plugin(plugin, name)
    return registry


_CACHED: Registry | None = None


def loaded() -> Registry | None:
    """The process-wide registry if it has been loaded (or set), without loading it."""
    return _CACHED


def get_registry() -> Registry:
    """The process-wide registry of installed plugins, loaded once."""
    global _CACHED
    if _CACHED is None:
        _CACHED = load_registry()
    return _CACHED
