"""Dynamic batching for the HTTP server: concurrent requests share token-budget batches.

A batcher task groups the waiting requests, up to ``max_batch_tokens`` real tokens (waiting ``max_wait_ms`` for
more when fewer are queued), sorts the group's pairs by length into the scorer's token-budget batches, and feeds
them to one stream per core, as ``rerank`` runs them. Written here in asyncio rather than taken from a library:
the ones on PyPI batch by request count, and the cost here is tokens.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

# Real tokens of the requests whose pairs are sorted by length and batched together: more pairs sort into less
# padding, but the first request of a group waits for the whole group (a few requests of 100 DL20 passages).
DEFAULT_MAX_BATCH_TOKENS = 65536
DEFAULT_MAX_WAIT_MS = 5.0


@dataclass
class _Job:
    """One request's tokenised pairs and the future its handler awaits."""

    ids: list[list[int]]
    types: list[list[int]]
    tokens: int
    future: asyncio.Future


@dataclass
class _Group:
    """Requests whose pairs are sorted by length and batched together; done when every batch is scored."""

    jobs: list[_Job]
    scores: np.ndarray
    remaining: int
    failed: bool = False


class Batcher:
    """Groups waiting requests and keeps ``workers`` streams of forward batches busy.

    ``batches(ids, types)`` cuts a group's pairs into batches (:meth:`CrossEncoderScorer.batches`) and
    ``score_batch(batch)`` scores one (:meth:`CrossEncoderScorer.score_batch`, in a worker thread). Batches are
    handed to the streams one ahead (``workers + 1`` in flight), so the next group is formed, from the requests
    that arrived meanwhile, while the last batches of the previous one still run: no stream waits for a group
    to finish.
    """

    def __init__(
        self,
        batches: Callable[[list, list], list],
        score_batch: Callable[[Any], np.ndarray],
        *,
        workers: int = 1,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    ):
        self.batches = batches
        self.score_batch = score_batch
        self.workers = max(1, workers)
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_ms = max_wait_ms
        self.requests = self.groups = self.pairs = 0
        self.dropped = 0  # requests whose caller went away before their group was formed: never scored
        self._pending: deque[_Job] = deque()
        self._wakeup: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the batcher task in the running event loop (the app's startup)."""
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.workers + 1)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="rankdistill-serve")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Cancel the batcher task and wait for the batches in flight (the app's shutdown)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    async def submit(self, ids: list[list[int]], types: list[list[int]]) -> np.ndarray:
        """The raw scores of one request's pairs, once scored with whatever else is waiting."""
        job = _Job(ids, types, sum(len(x) for x in ids), asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._wakeup.set()
        return await job.future

    def _take(self) -> list[_Job]:
        """The oldest waiting requests up to the token budget (always at least one)."""
        jobs = [self._pending.popleft()]
        tokens = jobs[0].tokens
        while self._pending and tokens + self._pending[0].tokens <= self.max_batch_tokens:
            tokens += self._pending[0].tokens
            jobs.append(self._pending.popleft())
        live = [job for job in jobs if not job.future.done()]  # a caller that went away was cancelled
        self.dropped += len(jobs) - len(live)
        return live

    async def _run(self) -> None:
        import numpy as np

        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if sum(job.tokens for job in self._pending) < self.max_batch_tokens and self.max_wait_ms > 0:
                await asyncio.sleep(self.max_wait_ms / 1000)  # let concurrent callers join this group
            jobs = self._take()
            if not jobs:
                continue
            ids = [x for job in jobs for x in job.ids]
            group = _Group(jobs, np.zeros(len(ids), dtype=np.float32), len(ids))
            self.groups += 1
            for batch in self.batches(ids, [x for job in jobs for x in job.types]):
                await self._slots.acquire()
                done = loop.run_in_executor(self._executor, self.score_batch, batch)
                done.add_done_callback(functools.partial(self._scored, group, batch))

    def _scored(self, group: _Group, batch, done: asyncio.Future) -> None:
        """In the event loop: one batch is back; the group's callers get their scores once all are."""
        self._slots.release()
        if group.failed:
            return
        if done.cancelled() or done.exception() is not None:
            group.failed = True
            exc = RuntimeError("scoring was cancelled") if done.cancelled() else done.exception()
            log.error("scoring failed: %s: %s", type(exc).__name__, exc)
            for job in group.jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        group.scores[batch.index] = done.result()
        group.remaining -= len(batch.index)
        if group.remaining:
            return
        start = 0
        for job in group.jobs:
            if not job.future.done():
                job.future.set_result(group.scores[start : start + len(job.ids)])
            start += len(job.ids)
        self.requests += len(group.jobs)
        self.pairs += len(group.scores)
