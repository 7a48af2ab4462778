"""User-facing errors: one clear sentence plus what to do. The CLI prints these without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class OptbenchError(Exception):
    """An error whose message is written for the person at the terminal."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class UnknownNameError(OptbenchError, KeyError):
    """A name the registry does not know; carries the close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        matches = close_matches(name, known)
        if matches:
            message = f"unknown {kind} {name!r}; did you mean " + " or ".join(repr(m) for m in matches) + "?"
        else:
            message = f"unknown {kind} {name!r}."
        super().__init__(message, f"Run `optbench list {kind}s` to see all {len(known)}.")
        self.matches = matches


def close_matches(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Close spellings first, treating '_' and '-' and case as the same."""
    known = list(known)
    norm = name.lower().replace("_", "-").replace(" ", "-")
    exact = [k for k in known if k == norm]
    if exact:  # only case, '_' or ' ' differ: that is the name meant, other suggestions are noise
        return exact
    fuzzy = difflib.get_close_matches(norm, known, n=n, cutoff=0.6)
    prefix = [k for k in known if k.startswith(norm) or norm.startswith(k)]
    out: list[str] = []
    for k in exact + fuzzy + prefix:
        if k not in out:
            out.append(k)
    return out[:n]


class NotApplicable(Exception):  # noqa: N818 - named for what it means, like Benchopt's skip()
    """Raised by a task's or optimizer's build (or the runner) when the pair cannot run by design, e.g. an
    optimizer that needs a model on a task that has none. The trial ends as `skipped` with this reason: not a
    failure, not counted by the gate, shown as "n/a"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
