"""Serve a cross-encoder over HTTP: ``POST /v1/rerank`` in the shape Cohere, Jina and text-embeddings-inference share.

Request: ``{"query": str, "documents": [str | {"text": str}], "top_n": int?, "return_documents": bool?}``
(a ``model`` field is accepted and ignored: one model is served). Response: ``{"results": [{"index",
"relevance_score", "document"?}], ...}`` sorted by score, highest first. Scores are the model's raw scores,
the same as ``rankdistill rerank`` writes (not squashed into 0..1).

Each request is tokenised on arrival (query and documents cut separately to the model's budgets, as
``rerank`` does; a cut is reported in ``meta`` and in the ``X-Rankdistill-Truncated`` header). A batcher
task then groups the waiting requests, up to ``max_batch_tokens`` real tokens (waiting ``max_wait_ms`` for more
when fewer are queued), sorts the group's pairs by length into the scorer's token-budget batches, and feeds
them to one stream per core, as ``rerank`` runs them (:class:`Batcher`): concurrent callers share batches.
The batcher is asyncio written here rather than a library: the ones on PyPI batch by request count, and the
cost here is tokens.
"""

# No ``from __future__ import annotations``: FastAPI reads the route functions' annotations, which name classes
# imported inside create_app (FastAPI and pydantic load only when a server is made, not with the CLI).
import asyncio
import functools
import hmac
import logging
import os
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

from rankdistill.errors import RankdistillError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

API_KEY_ENV = "RANKDISTILL_API_KEY"
TRUNCATED_HEADER = "X-Rankdistill-Truncated"
DEFAULT_MAX_DOCUMENTS = 1000
# Real tokens of the requests whose pairs are sorted by length and batched together (65k ≈ 6 requests of 100
# DL20 passages): more pairs sort into less padding, but the first request of a group waits for the whole group.
DEFAULT_MAX_BATCH_TOKENS = 65536
DEFAULT_MAX_WAIT_MS = 5.0
INSTALL_HINT = "install the serve extra: pip install 'rankdistill[serve]'"


def _document_text(value: Any) -> Any:
    """A document is a string or, as Jina and Cohere accept, an object whose ``text`` is the string."""
    if isinstance(value, dict):
        if isinstance(value.get("text"), str):
            return value["text"]
        raise ValueError("a document object needs a string field 'text'")
    if isinstance(value, str):
        return value
    raise ValueError("each document must be a string or an object with a string field 'text'")


@functools.cache
def request_model():
    """The pydantic model of a ``/v1/rerank`` request body."""
    from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

    class RerankRequest(BaseModel):
        model_config = ConfigDict(extra="ignore")

        query: str
        documents: list[Annotated[str, BeforeValidator(_document_text)]]
        top_n: Optional[int] = Field(None, ge=1, description="Return only the best top_n results (all when absent).")
        return_documents: bool = False
        model: Optional[str] = Field(None, description="Accepted for client compatibility; one model is served.")

    return RerankRequest


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
    scores: "np.ndarray"
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
        score_batch: Callable[[Any], "np.ndarray"],
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
        self._pending: deque[_Job] = deque()
        self._wakeup: Optional[asyncio.Event] = None
        self._slots: Optional[asyncio.Semaphore] = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.workers + 1)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="rankdistill-serve")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    async def submit(self, ids: list[list[int]], types: list[list[int]]) -> "np.ndarray":
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
        return [job for job in jobs if not job.future.done()]  # a caller that went away was cancelled

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


def _readable(errors: Sequence[dict]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        msg = str(err.get("msg", "invalid"))
        parts.append(f"{loc}: {msg.removeprefix('Value error, ')}")
    return "; ".join(parts)


def create_app(
    scorer,
    *,
    name: str | None = None,
    max_documents: int = DEFAULT_MAX_DOCUMENTS,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    api_key: str | None = None,
    api_key_env: str = API_KEY_ENV,
):
    """The FastAPI app around a loaded :class:`~rankdistill.reranking.scorer.CrossEncoderScorer`.

    ``api_key``: when given, every route but ``/health`` needs ``Authorization: Bearer <api_key>``.
    """
    try:
        import anyio.to_thread
        from fastapi import Depends, FastAPI, HTTPException, Request, Response
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
        from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
        from starlette.exceptions import HTTPException as StarletteHTTPException
    except ImportError as exc:
        raise RankdistillError(f"serving needs FastAPI and uvicorn ({exc.name} is missing); {INSTALL_HINT}") from exc
    from contextlib import asynccontextmanager

    if max_documents < 1 or max_batch_tokens < 1 or max_wait_ms < 0:
        raise RankdistillError("max_documents and max_batch_tokens must be at least 1, and max_wait_ms at least 0")
    RerankRequest = request_model()  # noqa: N806
    name = name or Path(str(scorer.model_path)).name or str(scorer.model_path)
    batcher = Batcher(scorer.batches, scorer.score_batch, workers=scorer.workers, max_batch_tokens=max_batch_tokens,
                      max_wait_ms=max_wait_ms)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_app):
        import torch

        # one intra-op thread per stream, as CrossEncoderScorer.score runs its streams; restored on shutdown
        previous = torch.get_num_threads()
        if batcher.workers > 1:
            torch.set_num_threads(1)
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            torch.set_num_threads(previous)

    app = FastAPI(title="rankdistill", summary=f"re-ranking with {name}", lifespan=lifespan)
    app.state.batcher = batcher
    bearer = HTTPBearer(auto_error=False)

    def authorised(credentials: Annotated[Optional[HTTPAuthorizationCredentials], Depends(bearer)]) -> None:
        if api_key is None:
            return
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, api_key.encode()):
            raise HTTPException(
                401,
                detail=f"missing or wrong bearer token: send 'Authorization: Bearer <token>' with the token in ${api_key_env}",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": f"invalid request: {_readable(errors)}", "errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception):
        return JSONResponse(status_code=500, content={"detail": f"internal error: {type(exc).__name__}: {exc}"})

    def encode(query: str, documents: list[str]):
        cut_q: set[str] = set()
        cut_p: set[str] = set()
        ids, types = scorer.encoder.encode([query] * len(documents), documents, cut_q, cut_p)
        return ids, types, bool(cut_q), [i for i, d in enumerate(documents) if d in cut_p]

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": name, "requests": batcher.requests, "groups": batcher.groups, "pairs": batcher.pairs}

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    async def models() -> dict:
        return {
            "object": "list",
            "data": [{
                "id": name, "object": "model", "created": created, "owned_by": "rankdistill",
                "dtype": scorer.dtype, "device": scorer.device, "max_query_tokens": scorer.encoder.max_query_length,
                "max_document_tokens": scorer.encoder.max_passage_length, "max_documents": max_documents,
            }],
        }

    async def rerank(body: RerankRequest, response: Response) -> dict:
        if not body.query.strip():
            raise HTTPException(422, detail="query is empty: send the search query as a non-empty string")
        if not body.documents:
            raise HTTPException(422, detail="documents is empty: send at least one document to re-rank")
        if len(body.documents) > max_documents:
            raise HTTPException(
                422,
                detail=f"{len(body.documents)} documents is more than this server's limit of {max_documents} per request; "
                "split the request (or start the server with a higher --max-documents)",
            )
        ids, types, query_cut, cut_docs = await anyio.to_thread.run_sync(encode, body.query, body.documents)
        scores = await batcher.submit(ids, types)
        order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))[: body.top_n]
        results = []
        for i in order:
            item: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
            if body.return_documents:
                item["document"] = {"text": body.documents[i]}
            results.append(item)
        truncated = len(cut_docs) + int(query_cut)
        if truncated:
            response.headers[TRUNCATED_HEADER] = str(truncated)
        return {
            "id": uuid.uuid4().hex,
            "model": name,
            "results": results,
            "usage": {"total_tokens": sum(len(x) for x in ids)},
            "meta": {
                "truncated": bool(truncated), "query_truncated": query_cut, "truncated_documents": cut_docs,
                "max_query_tokens": scorer.encoder.max_query_length, "max_document_tokens": scorer.encoder.max_passage_length,
            },
        }

    app.post("/v1/rerank", dependencies=[Depends(authorised)])(rerank)
    app.post("/rerank", dependencies=[Depends(authorised)], include_in_schema=False)(rerank)  # TEI's path
    return app


def serve(
    model: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    batch_tokens: int | None = None,
    max_query_length: int | None = None,
    max_passage_length: int | None = None,
    max_documents: int = DEFAULT_MAX_DOCUMENTS,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    api_key_env: str = API_KEY_ENV,
    log_level: str = "info",
) -> None:
    """Serve ``model`` (a cross-encoder folder, hub id or short name) over HTTP until interrupted.

    ``POST /v1/rerank`` (and ``/rerank``), ``GET /health``, ``GET /v1/models``. When the environment variable
    ``api_key_env`` is set, every route but ``/health`` needs ``Authorization: Bearer <its value>``.
    ``batch_tokens``: padded tokens per forward batch (the scorer's); ``max_batch_tokens``: real tokens of the
    requests scored together; ``max_wait_ms``: how long a lone request waits for others to join it.
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise RankdistillError(f"serving needs uvicorn; {INSTALL_HINT}") from exc
    from rankdistill.reranking.scorer import CrossEncoderScorer

    api_key = os.environ.get(api_key_env)
    if api_key is not None and not api_key.strip():
        raise RankdistillError(f"${api_key_env} is set but empty: set it to the bearer token, or unset it to serve without auth")
    scorer = CrossEncoderScorer(
        model, dtype=dtype, device=device, batch_tokens=batch_tokens,
        max_query_length=max_query_length, max_passage_length=max_passage_length,
    )
    app = create_app(scorer, name=name, max_documents=max_documents, max_batch_tokens=max_batch_tokens,
                     max_wait_ms=max_wait_ms, api_key=api_key.strip() if api_key else None, api_key_env=api_key_env)
    auth = f"bearer token from ${api_key_env}" if api_key else f"off (set ${api_key_env} to require a bearer token)"
    if not api_key and host not in ("127.0.0.1", "localhost", "::1"):
        warnings.warn(f"listening on {host} without auth: anyone who reaches this port can use the model; set ${api_key_env}",
                      stacklevel=2)
    print(f"serving {model} ({scorer.dtype} on {scorer.device}) at http://{host}:{port}/v1/rerank; auth {auth}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
