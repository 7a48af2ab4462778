"""A local preview server for a built site: static files on 127.0.0.1 only."""

from __future__ import annotations

import functools
import http.server
from pathlib import Path


def make_server(directory: Path, port: int) -> http.server.ThreadingHTTPServer:
    """A static file server for DIRECTORY on 127.0.0.1 only (port 0 picks a free one)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
