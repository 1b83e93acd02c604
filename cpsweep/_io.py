"""Atomic file writes on a local disk or any pyarrow file system (s3://, gs://, NFS): the one writer that
checkpoints, data caches and the results tables share."""

from __future__ import annotations

import contextlib
import os
import uuid

import pyarrow.fs as pafs


def atomic_write(path: str | os.PathLike, data: bytes, fs: pafs.FileSystem | None = None) -> None:
    """Write `data` to `path` so that a reader sees the old file or the whole new one, never a part:
    a temporary sibling, then a rename (a single PUT on object stores). Creates missing folders.

    Args:
        path: a local path (with `fs` None) or a path inside `fs`.
        fs: the file system; None for the local disk.

    Raises:
        OSError: the folder or the file cannot be written (the temporary file is removed).
    """
    if fs is None:
        fs, path = pafs.LocalFileSystem(), os.path.abspath(os.fspath(path))
    path = os.fspath(path)
    folder, name = path.rsplit("/", 1)
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:12]}.tmp"
    fs.create_dir(folder, recursive=True)
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.delete_file(tmp)
        raise
