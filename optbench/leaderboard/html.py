"""HTML building blocks: escaping, JSON data islands, sortable tables and the page shell.

Everything that came from a plugin, a task or a result reaches the page through `esc` (text and attributes)
or `json_island` (data for the plots), so a hostile name, summary, error or hyperparameter is shown as text
and can never close a tag or a <script>. The pages also carry a Content-Security-Policy that forbids inline
scripts and event handlers, so a mistake in escaping would still not run code.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha1
from typing import Any

CSP = ("default-src 'none'; script-src 'self' file:; style-src 'self' file: 'unsafe-inline'; "
       "img-src 'self' file: data:; font-src 'self' file: data:; connect-src 'none'; base-uri 'none'; "
       "form-action 'none'")


def esc(value: Any) -> str:
    """Text or attribute value, escaped (quotes included)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value), quote=True)


def slug(name: str) -> str:
    """A file-name-safe slug; a name that is not already one gets a short hash so two names never collide."""
    s = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")[:60]
    if s != str(name) or not s:
        s = f"{s or 'x'}-{sha1(str(name).encode()).hexdigest()[:8]}"
    return s


def _clean(obj: Any) -> Any:
    """JSON has no NaN or infinity: they become null (Plotly leaves a gap)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        return _clean(obj.item())
    return obj


def safe_json(obj: Any) -> str:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' survives, so `</script>` cannot."""
    text = json.dumps(_clean(obj), separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, rep)
    return text


def json_island(element_id: str, obj: Any) -> str:
    return f'<script type="application/json" id="{esc(element_id)}">{safe_json(obj)}</script>'


def plot_div(element_id: str, figure: dict[str, Any], caption: str = "") -> str:
    """A Plotly figure: its spec as a JSON island plus the div that assets/site.js draws it into."""
    cap = f'<p class="caption">{caption}</p>' if caption else ""
    return (f'<figure class="plot-box"><div class="plot" id="{esc(element_id)}" data-figure="{esc(element_id)}-data">'
            f'</div>{json_island(element_id + "-data", figure)}{cap}</figure>')


# --- cells and tables ------------------------------------------------------------------------------
@dataclass
class Cell:
    """Pre-escaped HTML and the raw value the table sorts by (None sorts last)."""

    html: str
    sort: float | str | None = None
    cls: str = ""


def text_cell(value: Any) -> Cell:
    return Cell(esc(value), None if value is None else str(value))


def num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt(value: Any, digits: int = 4) -> str:
    v = num(value)
    return "—" if v is None else f"{v:.{digits}g}"


def badge(text: str, kind: str, title: str = "") -> str:
    t = f' title="{esc(title)}"' if title else ""
    return f'<span class="badge {esc(kind)}"{t}>{esc(text)}</span>'


def table(headers: Sequence[tuple[str, str]], rows: Sequence[Sequence[Cell]], table_id: str = "",
          row_classes: Sequence[str] | None = None, caption: str = "") -> str:
    """A sortable table; `headers` are (label, tooltip) pairs, already plain text (escaped here)."""
    tid = f' id="{esc(table_id)}"' if table_id else ""
    text_cols = {i for i, c in enumerate(rows[0]) if isinstance(c.sort, str)} if rows else set()
    head = "".join(
        f'<th scope="col" title="{esc(tip)}" tabindex="0"{" class=text" if i in text_cols else ""}>{esc(label)}</th>'
        for i, (label, tip) in enumerate(headers)
    )
    body = []
    for i, row in enumerate(rows):
        rc = row_classes[i] if row_classes else ""
        cells = []
        for c in row:
            sort = "" if c.sort is None else f' data-sort="{esc(c.sort)}"'
            names = " ".join(n for n in (c.cls, "text" if isinstance(c.sort, str) else "") if n)
            cls = f' class="{esc(names)}"' if names else ""
            cells.append(f"<td{sort}{cls}>{c.html}</td>")
        body.append(f'<tr class="{esc(rc)}">' + "".join(cells) + "</tr>")
    cap = f"<caption>{caption}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table class="sortable"{tid}>{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


# --- the page shell --------------------------------------------------------------------------------
NAV = [("index.html", "Overview"), ("studies.html", "Studies"), ("curves.html", "Training curves"),
       ("geometry.html", "Geometry")]


def page(title: str, body: str, meta_line: str, current: str = "", plots: bool = False) -> str:
    """A whole page. `title` is plain text (escaped here); `body` and `meta_line` are HTML."""
    nav = " ".join(
        f'<a href="{href}"{" aria-current=page" if href == current else ""}>{label}</a>' for href, label in NAV
    )
    plot_js = '<script src="assets/plotly.min.js" defer></script>' if plots else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{esc(title)} · optbench leaderboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="assets/site.css">
{plot_js}
<script src="assets/site.js" defer></script>
</head>
<body>
<header class="top"><a class="brand" href="index.html">optbench leaderboard</a><nav>{nav}</nav></header>
<main>
<h1>{esc(title)}</h1>
<p class="meta">{meta_line}</p>
{body}
</main>
<footer><p class="meta">{meta_line}</p>
<p>Built by <code>optbench leaderboard build</code> from Parquet results; static files only, no server and no
network needed.</p></footer>
</body>
</html>
"""
