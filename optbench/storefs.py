"""Where a results root lives: a local directory or any pyarrow / fsspec filesystem URI (s3://, gs://, memory://).

Ray clusters without a shared disk write their trials straight to object storage, so the store talks to a
`pyarrow.fs.FileSystem` rather than to `pathlib`. Local roots keep their `Path` (claims and messages use it)
and their crash-safe write (temporary name, fsync, rename); on other filesystems a file is written under a
temporary name and moved, except on object stores, where a single PUT is already all-or-nothing.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from optbench.errors import OptbenchError

_OBJECT_STORES = {"s3", "gcs"}


@dataclass(frozen=True)
class Location:
    fs: pafs.FileSystem
    path: str  # the root inside `fs`, without a trailing slash
    uri: str  # as the user wrote it, for messages
    local: Path | None  # set for a root on this machine's disk

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts]) if self.path else "/".join(parts)


def locate(root: str | Path, filesystem: pafs.FileSystem | None = None) -> Location:
    """Resolve `root` (a path, a file:// URI or any URI pyarrow or fsspec understands) to a filesystem."""
    if filesystem is not None:
        return Location(filesystem, str(root).rstrip("/"), str(root), None)
    text = str(root)
    if "://" not in text or text.startswith("file://"):
        path = Path(text[len("file://"):] if text.startswith("file://") else text)
        return Location(pafs.LocalFileSystem(), str(path.absolute()), text, path)
    try:
        fs, path = pafs.FileSystem.from_uri(text)
        return Location(fs, path.rstrip("/"), text, None)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OSError) as arrow_exc:
        reason = str(arrow_exc).splitlines()[0]
    try:
        import fsspec.core
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs, path = fsspec.core.url_to_fs(text)
        return Location(PyFileSystem(FSSpecHandler(fs)), path.rstrip("/"), text, None)
    except ImportError:
        pass
    except (ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] or reason
    raise OptbenchError(f"cannot open the results location {text}: {reason}.",
                        "Use a local directory, or install the filesystem's package (e.g. s3fs, gcsfs).")


def list_files(loc: Location, folder: str, suffix: str = ".parquet") -> list[pafs.FileInfo]:
    """Files directly under `folder` ending in `suffix`, sorted by name; temporary (dot) names are not results."""
    try:
        infos = loc.fs.get_file_info(pafs.FileSelector(loc.join(folder), allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = [i for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(suffix)
           and not i.base_name.startswith(".")]
    return sorted(out, key=lambda i: i.base_name)


def makedirs(loc: Location, *folders: str) -> None:
    for folder in folders:
        loc.fs.create_dir(loc.join(folder), recursive=True)


def write_bytes_atomic(loc: Location, rel: str, data: bytes) -> None:
    write_atomic(loc, rel, lambda fh: fh.write(data))


def write_table_atomic(loc: Location, rel: str, table: pa.Table) -> None:
    write_atomic(loc, rel, lambda fh: pq.write_table(table, fh))


def write_atomic(loc: Location, rel: str, fill) -> None:
    """Create `rel` under the root whole or not at all: `fill(fh)` writes the content."""
    final = loc.join(rel)
    if loc.local is not None:
        path = Path(final)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fill(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return
    if loc.fs.type_name in _OBJECT_STORES:
        with loc.fs.open_output_stream(final) as fh:
            fill(fh)
        return
    head, _, name = final.rpartition("/")
    tmp = f"{head}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        with loc.fs.open_output_stream(tmp) as fh:
            fill(fh)
        loc.fs.move(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError, OSError):
            if loc.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                loc.fs.delete_file(tmp)


def delete(loc: Location, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        loc.fs.delete_file(path)


def read_bytes(loc: Location, path: str) -> bytes:
    with loc.fs.open_input_stream(path) as fh:
        return fh.read()
