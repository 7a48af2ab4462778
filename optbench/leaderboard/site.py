"""Writes the static site: every page plus assets/ (Plotly's bundle once, our CSS and JS), from one Board.

The output directory is written page by page into a fresh temporary sibling and then swapped in, so a
half-built site never replaces a good one.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from optbench.errors import OptbenchError
from optbench.leaderboard import pages
from optbench.leaderboard.model import Board, load_board
from optbench.leaderboard.static import SITE_CSS, SITE_JS
from optbench.leaderboard.study_pages import render_studies

MARKER = ".optbench-leaderboard"  # only a directory we built (or an empty one) is ever replaced


def plotly_js() -> str:
    """The plotly.js bundle shipped inside the plotly Python package: nothing is fetched from a CDN."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def render(board: Board) -> dict[str, str]:
    """Relative path -> HTML for every page of the site."""
    files = {
        "index.html": pages.overview_page(board),
        "curves.html": pages.curves_page(board),
        "geometry.html": pages.geometry_page(board),
    }
    if board.untuned is not None:
        files[pages.UNTUNED_HREF] = pages.untuned_page(board.untuned)
    for task in board.tasks:
        files[pages.task_href(task)] = pages.task_page(board, task)
    for opt in board.optimizers:
        files[pages.optimizer_href(opt)] = pages.optimizer_page(board, opt)
    files.update(render_studies(board, board.studies, pages.meta_line(board)))
    return files


def write_site(board: Board, out: str | Path) -> list[Path]:
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise OptbenchError(f"{out} exists and is not an optbench leaderboard site; refusing to overwrite it.",
                            "Pass an empty or new directory with --out.")
    files = render(board)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "assets").mkdir()
        (tmp / "assets" / "plotly.min.js").write_text(plotly_js(), encoding="utf-8")
        (tmp / "assets" / "site.css").write_text(SITE_CSS, encoding="utf-8")
        (tmp / "assets" / "site.js").write_text(SITE_JS, encoding="utf-8")
        (tmp / MARKER).write_text("written by optbench leaderboard build\n", encoding="utf-8")
        for rel, text in files.items():
            (tmp / rel).write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return [out / rel for rel in files]


def build_site(results: str | Path, out: str | Path, registry: Any = None,
               studies: list[Any] | None = None) -> tuple[Board, list[Path]]:
    """Read `results`, render and write the site to `out` (with a page per study); returns the board and the
    pages written."""
    board = load_board(results, registry)
    board.studies = list(studies or [])
    return board, write_site(board, out)
