"""One writer per output folder: an exclusive ``fcntl.flock`` on a lock file inside it.

Two ``teach`` (or ``pipeline``) processes on one folder would both pay for the same windows and overwrite each
other's ``stats.json``; the second one must stop at once and say who holds the folder. ``flock`` is released by the
kernel when its holder dies, even by SIGKILL, so a killed run never leaves a stale lock behind (a pid file alone
would). The lock file is never deleted: removing it would let a third process lock a fresh inode while the second
still holds the old one. Within one process the lock is re-entrant (a pipeline that runs ``teach`` in-process).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from rankdistill.errors import OutputLockedError

LOCK_NAME = ".rankdistill.lock"

_held: dict[Path, int] = {}  # lock file -> re-entry depth, for this process
_guard = threading.Lock()


@contextlib.contextmanager
def output_lock(folder: str | Path, holder: str) -> Iterator[Path]:
    """Hold ``folder``'s lock for the block; ``holder`` (e.g. ``"teach"``) names the command in the error.

    Raises:
        OutputLockedError: another process holds the folder; the message names it, the holder's pid and the fix.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / LOCK_NAME).resolve()
    with _guard:
        if path in _held:
            _held[path] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield path
        finally:
            with _guard:
                _held[path] -= 1
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no advisory locks, run unguarded
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise OutputLockedError(
            f"{folder} is in use by another process (pid {pid}), so this {holder} stops rather than redo and "
            "overwrite its work; wait for that process to finish (or stop it), or choose another output folder"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        with _guard:
            _held[path] = 1
        try:
            yield path
        finally:
            with _guard:
                del _held[path]
    finally:
        os.close(fd)  # closing the descriptor releases the flock
