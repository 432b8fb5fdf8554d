"""Atomic writes, so an interrupted stage never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rankdistill.errors import RankdistillError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # mkstemp makes 0600 files; outputs get the usual permissions


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only when the block ends without an error.

    For libraries that write files themselves (pyarrow, safetensors); :func:`atomic_write` opens it for you.
    """
    target = Path(path)
    if target.is_dir():  # os.replace would fail only after the work is done, with a bare IsADirectoryError
        raise RankdistillError(f"{target}: is a folder; give the path of a file to write")
    if target.parent.exists() and not target.parent.is_dir():
        raise RankdistillError(f"{target.parent}: is a file, so {target.name} cannot be written inside it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.isfile(tmp):
            os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary file beside ``path`` (flushed to disk) and rename it over ``path`` only on success."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
