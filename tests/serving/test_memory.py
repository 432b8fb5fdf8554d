"""The server's memory trimmer: glibc's malloc_trim is found, and it runs only after work was done."""

from __future__ import annotations

import asyncio
import platform

import pytest

from rankdistill.serving import memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_malloc_trim_is_found_and_callable_on_glibc():
    trim = memory.malloc_trim()
    assert trim is not None and trim() in (0, 1)  # 1: memory was released, 0: there was none to release


def test_release_memory_trims_once_per_interval_in_which_work_was_done(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(memory, "malloc_trim", lambda: lambda: calls.append(1))
    pairs = [0]

    async def scenario() -> tuple[int, int, int]:
        task = asyncio.get_running_loop().create_task(memory.release_memory(lambda: pairs[0], interval_s=0.05))
        await asyncio.sleep(0.2)  # idle: several intervals, nothing to give back
        idle = len(calls)
        pairs[0] += 100
        await asyncio.sleep(0.2)  # one interval sees the work, the next ones do not
        once = len(calls)
        pairs[0] += 1
        await asyncio.sleep(0.2)
        task.cancel()
        return idle, once, len(calls)

    assert asyncio.run(scenario()) == (0, 1, 2)


def test_release_memory_returns_at_once_without_malloc_trim(monkeypatch):
    monkeypatch.setattr(memory, "malloc_trim", lambda: None)
    asyncio.run(asyncio.wait_for(memory.release_memory(lambda: 0, interval_s=3600), timeout=1))
