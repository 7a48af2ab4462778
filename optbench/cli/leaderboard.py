"""`optbench leaderboard build | serve | publish`: render the static site, preview it, rebuild the published one."""

from __future__ import annotations

from pathlib import Path

import click

from optbench.cli.context import RESULTS_ROOT, CliContext, cli_context
from optbench.errors import OptbenchError

PUBLISHED_RESULTS = Path("leaderboard/results")
PUBLISHED_SITE = Path("leaderboard/site")
PUBLISHED_STUDIES = Path("leaderboard/studies")
STUDIES_OPTION = click.option("--studies", "studies_dir", default=None, type=click.Path(path_type=Path),
                              help="Directory of study files (*.json); default: leaderboard/studies if present.")


def _studies(directory: Path | None) -> list:
    """The declared studies: from --studies, else the repository's leaderboard/studies when it is there."""
    from optbench.studies import load_studies

    if directory is None:
        return load_studies(PUBLISHED_STUDIES) if PUBLISHED_STUDIES.is_dir() else []
    return load_studies(directory)


def _build(cli: CliContext, results: Path | str, out: Path, studies_dir: Path | None = None) -> None:
    from optbench.leaderboard.site import build_site

    console = cli.err_console
    from optbench.store import Store

    if not Store(results).exists():
        raise OptbenchError(f"no results directory at {results}.",
                            "Run `optbench run ... --results DIR` first, or pass --results.")
    board, pages = build_site(results, out, cli.optional_registry(), _studies(studies_dir))
    for problem in board.read_problems:
        console.print(f"[yellow]skipped[/yellow] {problem}", highlight=False)
    n_bad = int((board.trials["status"] != "ok").sum()) if not board.empty else 0
    console.print(f"wrote {len(pages)} pages ({len(board.trials)} trials, {len(board.optimizers)} optimizers, "
                  f"{len(board.tasks)} tasks, {n_bad} not ok) to {out}; open {out / 'index.html'}", highlight=False)


@click.group("leaderboard")
def leaderboard() -> None:
    """Render results as a static leaderboard site (opens from disk; no server or network needed)."""


@leaderboard.command("build")
@click.option("--results", default="optbench-results", show_default=True, type=RESULTS_ROOT)
@click.option("--out", default="leaderboard-site", show_default=True, type=click.Path(path_type=Path),
              help="Directory for the site (replaced if it holds a previous build).")
@STUDIES_OPTION
def build_cmd(results: Path | str, out: Path, studies_dir: Path | None) -> None:
    """Render RESULTS (Parquet) into a self-contained static site under OUT."""
    _build(cli_context(), results, out, studies_dir)


@leaderboard.command("publish")
@click.option("--results", default=str(PUBLISHED_RESULTS), show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default=str(PUBLISHED_SITE), show_default=True, type=click.Path(path_type=Path))
@STUDIES_OPTION
def publish_cmd(results: Path, out: Path, studies_dir: Path | None) -> None:
    """Rebuild the published board from leaderboard/results (scripts/publish-leaderboard reruns the grid first)."""
    if not results.is_dir():
        raise OptbenchError(f"no published results at {results}.",
                            "Run scripts/publish-leaderboard from the repository root to run the grid first.")
    _build(cli_context(), results, out, studies_dir)


@leaderboard.command("serve")
@click.option("--dir", "directory", default="leaderboard-site", show_default=True,
              type=click.Path(path_type=Path))
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
def serve_cmd(directory: Path, port: int) -> None:
    """Serve a built site on http://127.0.0.1:PORT until Ctrl-C."""
    if not (directory / "index.html").is_file():
        raise OptbenchError(f"no leaderboard site at {directory} (index.html missing).",
                            "Build one with `optbench leaderboard build --results DIR --out SITE`, then --dir SITE.")
    from optbench.leaderboard.serve import make_server

    console = cli_context().err_console
    try:
        server = make_server(directory, port)
    except OSError as exc:
        raise OptbenchError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}.",
                            "Pick another port with --port.") from None
    host, bound = server.server_address[:2]
    console.print(f"serving {directory} on http://{host}:{bound}/ (Ctrl-C stops)", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped", highlight=False)
    finally:
        server.server_close()
