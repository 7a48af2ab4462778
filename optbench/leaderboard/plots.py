"""Plotly figure specs (plain dicts for plotly.js, embedded as JSON islands).

Plotly.js renders every label as SVG text; names are HTML-escaped before they go in, which Plotly shows as
the literal characters (its label markup only understands a few tags, and escaped text contains none).
Seeds are drawn as a band (min to max over seeds at each step) around their mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from optbench.leaderboard import profile
from optbench.leaderboard.html import esc

#: ten clearly distinct colours (Tableau 10) for the lines a figure highlights; the rest are drawn grey
HIGHLIGHT = ["#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
             "#111111"]
#: the colour of lines a figure does not highlight
GREY = "#9ca3af"
#: points per curve line at most (evenly spaced over the logged steps)
MAX_POINTS = 120
#: curve lines drawn at first (the task's best by rank); the rest are one legend click away
VISIBLE_LINES = 8
#: a vertical legend beside the plot: it scrolls when there are many optimizers instead of eating the plot
SIDE_LEGEND = {"orientation": "v", "x": 1.01, "y": 1, "xanchor": "left", "font": {"size": 10}}

BASE_LAYOUT: dict[str, Any] = {
    "margin": {"l": 60, "r": 10, "t": 40, "b": 50},
    "height": 360,
    "hovermode": "closest",
    "legend": {"orientation": "h", "y": -0.22},
    "paper_bgcolor": "#fff",
    "plot_bgcolor": "#fff",
    "xaxis": {"gridcolor": "#e5e7eb", "zeroline": False},
    "yaxis": {"gridcolor": "#e5e7eb", "zeroline": False},
    "font": {"family": "system-ui, sans-serif", "size": 12},
}


def _layout(title: str, xtitle: str, ytitle: str, ylog: bool = False, **extra: Any) -> dict[str, Any]:
    layout = {**BASE_LAYOUT, "title": {"text": esc(title), "font": {"size": 14}, "x": 0.01, "xanchor": "left"}}
    layout["xaxis"] = {**BASE_LAYOUT["xaxis"], "title": {"text": esc(xtitle)}}
    layout["yaxis"] = {**BASE_LAYOUT["yaxis"], "title": {"text": esc(ytitle)}}
    if ylog:
        layout["yaxis"]["type"] = "log"
    layout.update(extra)
    return layout


def _round(values: Any) -> list[float | None]:
    out = []
    for v in values:
        v = float(v)
        out.append(float(f"{v:.6g}") if math.isfinite(v) else None)
    return out


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def figure_colors(shown: list[str], board_color: Callable[[str], str]) -> Callable[[str], str]:
    """Distinct colours for the lines one figure draws: a line keeps its board-wide colour where it has one (the
    board's top ten), the others take the highlight colours still free in this figure; lines beyond the ten
    highlight colours, and lines not shown, are grey."""
    colors = {o: board_color(o) for o in shown if board_color(o) != GREY}
    free = [c for c in HIGHLIGHT if c not in colors.values()]
    for o in shown:
        if o not in colors and free:
            colors[o] = free.pop(0)
    return lambda o: colors.get(o, GREY)


def profile_svg(ratios: pd.DataFrame, order: list[str], color: Callable[[str], str]) -> str:
    """The performance profile ρ(τ) on [1, 4] as inline SVG: the overview stays a light page (no plotting
    library). One step line per optimizer that reaches ρ > 0, in ranking order, highlighted ones on top."""
    w, h, left, right, top, bottom = 720, 330, 48, 200, 12, 40
    pw, ph = w - left - right, h - top - bottom

    def x(tau: float) -> float:
        return left + (tau - 1.0) / (profile.TAU_MAX - 1.0) * pw

    def y(r: float) -> float:
        return top + (1.0 - r) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" class="profile-svg" '
             f'aria-label="performance profile">']
    for t in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0):
        parts.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{top + ph}" class="grid"/>'
                     f'<text x="{x(t):.1f}" y="{top + ph + 14}" class="tick" text-anchor="middle">{t:g}</text>')
    for r in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left}" y1="{y(r):.1f}" x2="{left + pw}" y2="{y(r):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(r) + 4:.1f}" class="tick" text-anchor="end">{r:g}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{h - 6}" class="axis" text-anchor="middle">τ (time ÷ fastest '
                 "time on the task)</text>"
                 f'<text x="12" y="{top + ph / 2:.1f}" class="axis" text-anchor="middle" '
                 f'transform="rotate(-90 12 {top + ph / 2:.1f})">ρ(τ)</text>')
    drawn, flat = [], []
    for opt in order:
        if opt not in ratios.columns:
            continue
        taus, rhos = profile.profile_steps(ratios, opt)
        if max(rhos) == 0:
            flat.append(opt)
            continue
        d = f"M{x(taus[0]):.1f},{y(rhos[0]):.1f}"
        for tau, r in zip(taus[1:], rhos[1:], strict=True):
            d += f"H{x(tau):.1f}V{y(r):.1f}"
        data = f'data-tau="{" ".join(f"{t:.6g}" for t in taus)}" data-rho="{" ".join(f"{r:.6g}" for r in rhos)}"'
        drawn.append((opt, d, color(opt), data))
    # grey lines first, highlighted ones on top
    for opt, d, c, data in sorted(drawn, key=lambda t: t[2] != GREY):
        width = 1.2 if c == GREY else 2.4
        parts.append(f'<path d="{d}" fill="none" stroke="{c}" stroke-width="{width}" class="line" '
                     f'data-name="{esc(opt)}" {data}><title>{esc(opt)}</title></path>')
    ly = top + 6
    for opt, _, c, _ in drawn:
        if c == GREY:
            continue
        parts.append(f'<line x1="{left + pw + 12}" y1="{ly}" x2="{left + pw + 32}" y2="{ly}" stroke="{c}" '
                     f'stroke-width="3"/><text x="{left + pw + 38}" y="{ly + 4}" class="legend">{esc(opt)}</text>')
        ly += 17
    greys = [o for o, _, c, _ in drawn if c == GREY]
    if greys:
        parts.append(f'<line x1="{left + pw + 12}" y1="{ly}" x2="{left + pw + 32}" y2="{ly}" stroke="{GREY}" '
                     f'stroke-width="2"/><text x="{left + pw + 38}" y="{ly + 4}" class="legend">'
                     f"{len(greys)} more</text>")
    parts.append("</svg>")
    note = (f'<p class="note">Never within τ = 4 of the fastest on any task (ρ = 0, not drawn): '
            f"{esc(', '.join(flat))}.</p>") if flat else ""
    return "".join(parts) + note


def _y_range(points: pd.DataFrame) -> tuple[bool, list[float] | None]:
    """Log axis when positive values span decades; the range comes from trials that finished ok, so one
    diverged trial's exploding last point does not flatten every other curve (it is still there when zoomed out)."""
    ok = points[points["status"] == "ok"] if "status" in points and (points["status"] == "ok").any() else points
    values = ok["value"].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if not len(finite):
        return False, None
    lo, hi = float(finite.min()), float(finite.max())
    if lo > 0 and hi / lo > 100:
        pad = 0.05 * (math.log10(hi) - math.log10(lo))
        return True, [math.log10(lo) - pad, math.log10(hi) + pad]
    pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 1.0
    return False, [lo - pad, hi + pad]


def curve_figure(points: pd.DataFrame, order: list[str], color, x: str, title: str, ytitle: str,
                 shown: int = VISIBLE_LINES) -> dict[str, Any]:
    """`points`: curve rows (step, wall_time_s, value) joined with the trial's optimizer and status. The band
    spans the seeds; on the seconds axis each step sits at the mean time over seeds at which it was reached.
    The first `shown` optimizers of `order` are drawn; the others wait in the legend (one click shows them)."""
    data = []
    ylog, yrange = _y_range(points)
    for i, opt in enumerate(order):
        hidden = {"visible": "legendonly"} if i >= shown else {}
        mine = points[points["optimizer"] == opt]
        if mine.empty:
            continue
        g = mine.groupby("step").agg(x=(x, "mean"), lo=("value", "min"), hi=("value", "max"),
                                     mean=("value", "mean"), n=("value", "size")).reset_index()
        if len(g) > MAX_POINTS:  # keeps the site small with many optimizers; first and last step always kept
            g = g.iloc[np.unique(np.linspace(0, len(g) - 1, MAX_POINTS).round().astype(int))]
        xs, c = _round(g["x"]), (color(opt) if i < shown else GREY)
        label = esc(opt)
        if int(mine["trial_id"].nunique()) > 1:
            data.append({**hidden, "type": "scatter", "mode": "lines", "x": xs, "y": _round(g["lo"]),
                         "line": {"width": 0}, "showlegend": False, "hoverinfo": "skip", "legendgroup": label})
            data.append({**hidden, "type": "scatter", "mode": "lines", "x": xs, "y": _round(g["hi"]),
                         "line": {"width": 0},
                         "fill": "tonexty", "fillcolor": _rgba(c, 0.18), "showlegend": False, "hoverinfo": "skip",
                         "legendgroup": label})
        data.append({**hidden, "type": "scatter", "mode": "lines", "x": xs, "y": _round(g["mean"]), "name": label,
                     "legendgroup": label, "line": {"color": c, "width": 2},
                     "hovertemplate": "%{y:.4g} at %{x:.4g}<extra>" + label + "</extra>"})
    xtitle = "training steps" if x == "step" else "training time (s)"
    layout = _layout(title, xtitle, ytitle, ylog, legend=SIDE_LEGEND)
    if yrange is not None:
        layout["yaxis"]["range"] = yrange
    return {"data": data, "layout": layout}


def geometry_figure(points: pd.DataFrame, order: list[str], color, y: str, ytitle: str) -> dict[str, Any]:
    """One marker per trial: `y` against the generalisation gap (final test loss minus final train loss)."""
    data = []
    for opt in order:
        mine = points[(points["optimizer"] == opt) & points[y].notna() & points["gen_gap"].notna()]
        if mine.empty:
            continue
        text = [esc(f"{opt} · {t}/{p} · seed {s}") for t, p, s in zip(mine["task"], mine["preset"], mine["seed"],
                                                                      strict=True)]
        data.append({"type": "scatter", "mode": "markers", "x": _round(mine["gen_gap"]), "y": _round(mine[y]),
                     "name": esc(opt), "text": text, "marker": {"color": color(opt), "size": 9, "opacity": 0.85},
                     "hovertemplate": "%{text}<br>gap %{x:.4g}, " + esc(ytitle) + " %{y:.4g}<extra></extra>"})
    return {"data": data, "layout": _layout(f"{ytitle} vs generalisation gap",
                                            "generalisation gap (final test loss − final train loss)", ytitle,
                                            legend=SIDE_LEGEND)}


def _lr_of(hparams: Any) -> float | None:
    import json

    try:
        value = json.loads(hparams).get("lr") if isinstance(hparams, str) else None
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def lr_sensitivity_figure(cells: pd.DataFrame, order: list[str], color, title: str) -> dict[str, Any] | None:
    """Final quality against the learning rate (log axis), one line of markers per optimizer, one marker per
    configuration (summary cells: mean over ok seeds). Test accuracy where the task has it, else test loss.
    None when no optimizer has a finite value at two or more learning rates... or at all."""
    metric = "final_test_accuracy_mean" if pd.to_numeric(cells.get("final_test_accuracy_mean"),
                                                         errors="coerce").notna().any() else "final_test_loss_mean"
    ylabel = "final test accuracy" if metric.endswith("accuracy_mean") else "final test loss"
    data = []
    by_optimizer = dict(iter(cells.groupby(cells["optimizer"].astype(str), sort=False))) if len(cells) else {}
    for opt in order:
        mine = by_optimizer.get(opt)
        if mine is None:
            continue
        pts = sorted((lr, float(v), str(c)) for lr, v, c in zip(mine["hparams"].map(_lr_of), mine[metric],
                                                                  mine["config"], strict=True)
                     if lr is not None and v is not None and math.isfinite(float(v)))
        if not pts:
            continue
        data.append({"type": "scatter", "mode": "lines+markers", "x": _round([p[0] for p in pts]),
                     "y": _round([p[1] for p in pts]), "name": esc(opt), "text": [esc(p[2]) for p in pts],
                     "line": {"color": color(opt), "width": 1}, "marker": {"size": 8, "color": color(opt)},
                     "hovertemplate": "%{text}<br>lr %{x:.3g}: %{y:.4g}<extra></extra>"})
    if not data:
        return None
    layout = _layout(f"{ylabel} vs learning rate · {title}", "learning rate (log scale)", ylabel,
                     legend=SIDE_LEGEND)
    layout["xaxis"]["type"] = "log"
    return {"data": data, "layout": layout}
