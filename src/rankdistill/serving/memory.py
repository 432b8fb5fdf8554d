"""Keep a long-running server's memory flat: hand the memory torch freed back to the OS every few seconds.

Under varied traffic the server's resident memory climbed by about a gigabyte a minute (benchmarks/RESULTS.md, the
soak) though nothing stayed alive: glibc keeps what the scoring threads free, batch after batch of a new shape, in
its per-thread arenas, and ``malloc_trim(0)`` gave most of it back at once. So while requests are being scored the
server calls it every :data:`TRIM_INTERVAL_S` seconds, in a worker thread; where the C library is not glibc there is
nothing to call and nothing happens. (jemalloc or tcmalloc through ``LD_PRELOAD`` would do the same job from outside.)
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_INTERVAL_S = 5.0


def malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has no such function."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


async def release_memory(work_done: Callable[[], int], interval_s: float = TRIM_INTERVAL_S) -> None:
    """Every ``interval_s`` seconds in which ``work_done()`` (a counter of scored pairs) moved, trim the heap; runs
    until cancelled (the app's shutdown)."""
    trim = malloc_trim()
    if trim is None:
        log.debug("no malloc_trim in this C library: freed memory stays with the allocator")
        return
    seen = work_done()
    while True:
        await asyncio.sleep(interval_s)
        if work_done() != seen:
            seen = work_done()
            await asyncio.to_thread(trim)
