"""Flat optimizer state for small models: each state tensor of a parameter group lives in one flat buffer, and
every parameter's state entry is a view into it, so `state_dict` looks like any optimizer's.

Why: below about a million parameters an element-wise optimizer's step costs per-operation dispatch, not
arithmetic. A per-tensor loop dispatches ~15 operations per tensor; the same operations on flat buffers
dispatch once for the whole group (the gradients come in, and the update goes out, with one multi-tensor
`torch._foreach_*` call each). A per-tensor reduction is one multi-tensor norm over views of the flat vector,
and a per-tensor scalar goes back with one multi-tensor operation over the same views. The plugins keep
their per-tensor loop as the reference their flat step is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class FlatState:
    """A group's state as flat buffers (`bufs[key]`), with scratch vectors `g` (gradients in) and `out` (the
    update out) whose parameter-shaped views are made once."""

    ids: list[int]
    sizes: list[int]
    bufs: dict[str, torch.Tensor]
    g: torch.Tensor
    out: torch.Tensor
    g_views: list[torch.Tensor]
    out_views: list[torch.Tensor]
    _sqrt_sizes: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def of(cls, params: list[torch.Tensor], state: dict, keys: tuple[str, ...]) -> FlatState:
        """Concatenate the parameters' current state tensors (the truth, e.g. just loaded) and re-point each
        entry at its view of the new buffer."""
        sizes = [p.numel() for p in params]
        bufs = {k: torch.cat([state[p][k].reshape(-1) for p in params]) for k in keys}
        for k, buf in bufs.items():
            for p, view in zip(params, buf.split(sizes), strict=True):
                state[p][k] = view.view_as(p)
        ref = bufs[keys[0]]
        g, out = torch.empty_like(ref), torch.empty_like(ref)
        views = [[t.view_as(p) for t, p in zip(buf.split(sizes), params, strict=True)] for buf in (g, out)]
        return cls([id(p) for p in params], sizes, bufs, g, out, *views)

    def matches(self, params: list[torch.Tensor]) -> bool:
        return self.ids == [id(p) for p in params]

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The flat vector `x` as one view per parameter (a single dispatch)."""
        return list(x.split(self.sizes))

    def rms(self, x: torch.Tensor) -> torch.Tensor:
        """Per-parameter RMS of the flat vector `x`, as one vector: one multi-tensor norm, not a reduction per
        tensor (and not an index_add over the elements, which measured slower than the per-tensor loop)."""
        if self._sqrt_sizes is None:
            self._sqrt_sizes = torch.tensor(self.sizes, dtype=x.dtype, device=x.device).sqrt()
        return torch.stack(torch._foreach_norm(self.split(x))) / self._sqrt_sizes


class FlatStateMixin:
    """For an optimizer with a flat step: one `FlatState` per parameter group, kept outside `state` (so neither
    `state_dict` nor pickling carries it: it is created when first needed) and dropped on `load_state_dict`,
    since the loaded per-parameter state is the truth the buffers are rebuilt from."""

    def flat_state(self, group_index: int, params: list[torch.Tensor], keys: tuple[str, ...]) -> FlatState:
        """The group's flat state, rebuilt when the set of parameters with a gradient (or `keys`) changed."""
        cache: dict[int, FlatState] = self.__dict__.setdefault("_flat", {})
        flat = cache.get(group_index)
        if flat is None or not flat.matches(params) or tuple(flat.bufs) != keys:
            flat = cache[group_index] = FlatState.of(params, self.state, keys)  # type: ignore[attr-defined]
        return flat

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)  # type: ignore[misc]
        self.__dict__.pop("_flat", None)


def wanted(asked: str, chosen: str) -> bool:
    """Whether to take the flat step: asked for (`impl="flat"`), or "auto" where `fused.choose` picked the loop
    (below the fused kernel's threshold, or after it failed to compile)."""
    return chosen == "flat" or (asked == "auto" and chosen == "loop")


def uniform(params: list[torch.Tensor]) -> bool:
    """One dtype and one device: what one flat buffer needs."""
    return bool(params) and len({(p.dtype, p.device) for p in params}) == 1
