"""Serve a cross-encoder over HTTP: ``POST /v1/rerank``, ``/v2/rerank`` and ``/rerank``, ``GET /health``, ``GET /v1/models``.

The wire formats (Cohere v1 and Jina, Cohere v2, text-embeddings-inference) are :mod:`rankdistill.serving.schema`'s.
Each request is tokenised on arrival (query and documents cut separately to the model's budgets, as ``rerank``
does) and handed to the :class:`~rankdistill.serving.batcher.Batcher`, which scores it together with the other
waiting requests in the scorer's token-budget batches: concurrent callers share batches. A request is bounded before
it costs anything (body bytes, documents, tokens scored; :mod:`rankdistill.serving.guard` for the body), and a
caller that hangs up while queued leaves the queue. FastAPI and uvicorn load only when a server is made, not with
the CLI.
"""

# No ``from __future__ import annotations``: FastAPI reads the route functions' annotations, which name classes
# imported inside the functions that add the routes.
import hmac
import json
import logging
import os
import time
import warnings
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

from rankdistill.errors import RankdistillError
from rankdistill.serving.batcher import DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MAX_WAIT_MS, Batcher
from rankdistill.serving.guard import BodyGuard, ClientDisconnected, until_disconnect
from rankdistill.serving.memory import release_memory
from rankdistill.serving.schema import (
    TRUNCATED_HEADER,
    EncodedRequest,
    Limits,
    error_body,
    health_body,
    models_body,
    request_model,
    rerank_body,
    tei_body,
    tei_error_body,
    tei_request_model,
    validation_error_body,
)

log = logging.getLogger(__name__)

API_KEY_ENV = "RANKDISTILL_API_KEY"
DEFAULT_MAX_DOCUMENTS = 1000
# Tokens scored for one request, after cutting: four of the batcher's default groups, about 1,000 documents of
# 260 tokens; one request's share of the scoring is bounded whatever its texts.
DEFAULT_MAX_REQUEST_TOKENS = 4 * DEFAULT_MAX_BATCH_TOKENS
DEFAULT_MAX_BODY_BYTES = 16 * 2**20  # 1,000 documents of several kilobytes, with room for JSON escapes
DEFAULT_BODY_TIMEOUT_S = 30.0
INSTALL_HINT = "install the serve extra: pip install 'rankdistill[serve]'"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# Caches of compiled CPU kernels, one entry per shape, that a server's batches (a new shape almost every time) fill
# with memory: oneDNN's primitive cache and the per-thread LRU cache of PyTorch's oneDNN bindings, 1,024 entries each
# by default. With these caps a process scoring varied batches stayed flat where the defaults grew it by hundreds of
# MB (benchmarks/RESULTS.md, the soak). Read when the first kernel is made: set before loading; the operator's win.
KERNEL_CACHE_ENV = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64", "LRU_CACHE_CAPACITY": "16"}


def create_app(
    scorer,
    *,
    name: str | None = None,
    max_documents: int = DEFAULT_MAX_DOCUMENTS,
    max_request_tokens: int = DEFAULT_MAX_REQUEST_TOKENS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    api_key: str | None = None,
    api_key_env: str = API_KEY_ENV,
):
    """The FastAPI app around a loaded :class:`~rankdistill.reranking.scorer.CrossEncoderScorer`.

    Args:
        scorer: the loaded scorer; its budgets, dtype and device are the server's.
        name: the model name in responses and ``/v1/models`` (default: the model folder's name).
        max_documents: most documents in one request (more: 422).
        max_request_tokens: most tokens scored for one request, after cutting each text to its budget (more: 413).
        max_body_bytes: largest request body (larger: 413, unread when its Content-Length says so).
        body_timeout_s: how long a request body may take to arrive (slower: 408).
        max_batch_tokens: real tokens of the requests scored together.
        max_wait_ms: how long a lone request waits for others to share its batches.
        api_key: when given, every route but ``/health`` needs ``Authorization: Bearer <api_key>``.
        api_key_env: the environment variable that holds the key, named in the answer to a request without it.

    Returns:
        The app; its lifespan starts and stops the batcher.

    Raises:
        RankdistillError: FastAPI is not installed, or a limit is out of range.
    """
    _require_fastapi()
    from fastapi import FastAPI

    _check_limits(max_documents=max_documents, max_request_tokens=max_request_tokens, max_body_bytes=max_body_bytes,
                  max_batch_tokens=max_batch_tokens, body_timeout_s=body_timeout_s, max_wait_ms=max_wait_ms)
    name = name or Path(str(scorer.model_path)).name or str(scorer.model_path)
    batcher = Batcher(scorer.batches, scorer.score_batch, workers=scorer.workers, max_batch_tokens=max_batch_tokens,
                      max_wait_ms=max_wait_ms)
    limits = Limits(scorer.encoder.max_query_length, scorer.encoder.max_passage_length, max_documents,
                    max_request_tokens, max_body_bytes)
    app = FastAPI(title="rankdistill", summary=f"re-ranking with {name}", lifespan=_lifespan(batcher))
    app.state.batcher = batcher
    app.add_middleware(BodyGuard, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s)
    _add_error_handlers(app)
    auth = _bearer_auth(api_key, api_key_env)
    _add_info_routes(app, name, scorer, batcher, limits, auth)
    _add_rerank_routes(app, name, scorer, batcher, limits, auth)
    return app


def _check_limits(*, body_timeout_s: float, max_wait_ms: float, **counts: int) -> None:
    """Every count at least 1, the body deadline above 0 and the batching wait at least 0; the error names the key."""
    for key, value in counts.items():
        if value < 1:
            raise RankdistillError(f"{key} is {value}: it must be at least 1")
    if body_timeout_s <= 0:
        raise RankdistillError(f"body_timeout_s is {body_timeout_s}: it must be above 0")
    if max_wait_ms < 0:
        raise RankdistillError(f"max_wait_ms is {max_wait_ms}: it must be at least 0")


def _require_fastapi() -> None:
    try:
        import anyio.to_thread  # noqa: F401
        import fastapi  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as exc:
        raise RankdistillError(f"serving needs FastAPI and uvicorn ({exc.name} is missing); {INSTALL_HINT}") from exc


def _lifespan(batcher: Batcher):
    """Start the batcher (and the memory trimmer, :mod:`rankdistill.serving.memory`) with the app; stop them on shutdown."""

    @asynccontextmanager
    async def lifespan(_app):
        import asyncio

        import torch

        # one intra-op thread per stream, as CrossEncoderScorer.score runs its streams; restored on shutdown
        previous = torch.get_num_threads()
        if batcher.workers > 1:
            torch.set_num_threads(1)
        batcher.start()
        trimmer = asyncio.get_running_loop().create_task(release_memory(lambda: batcher.pairs))
        try:
            yield
        finally:
            trimmer.cancel()
            await batcher.stop()
            torch.set_num_threads(previous)

    return lifespan


def _add_error_handlers(app) -> None:
    """Every error answers JSON ``{"detail": ...}``: invalid bodies, HTTP errors and unexpected failures alike; a
    TEI-shaped request's errors add TEI's fields. A client that hung up gets 499 (nginx's "client closed request"),
    which only the access log sees."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def answer(request, status: int, body: dict, headers=None):
        if getattr(request.state, "tei", False):
            body = tei_error_body(body, status)
        return JSONResponse(status_code=status, content=body, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError):
        return answer(request, 422, validation_error_body(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return answer(request, exc.status_code, error_body(exc.detail), exc.headers)

    @app.exception_handler(ClientDisconnected)
    async def client_gone(_request, _exc: ClientDisconnected):
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def internal_error(request, exc: Exception):
        return answer(request, 500, error_body(f"internal error: {type(exc).__name__}: {exc}"))


def _bearer_auth(api_key: str | None, api_key_env: str):
    """A route dependency: with ``api_key``, a request must carry it as its bearer token (compared in constant time)."""
    from fastapi import Depends, HTTPException
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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

    return Depends(authorised)


def _add_info_routes(app, name: str, scorer, batcher: Batcher, limits: Limits, auth) -> None:
    """``GET /health`` (open, for load balancers) and ``GET /v1/models``."""
    created = int(time.time())

    @app.get("/health")
    async def health() -> dict:
        return health_body(name, batcher.requests, batcher.groups, batcher.pairs, batcher.dropped)

    @app.get("/v1/models", dependencies=[auth])
    async def models() -> dict:
        return models_body(name, created, scorer.dtype, scorer.device, limits)


def _add_rerank_routes(app, name: str, scorer, batcher: Batcher, limits: Limits, auth) -> None:
    """``POST /v1/rerank`` (Cohere v1, Jina), ``POST /v2/rerank`` (Cohere v2), and ``POST /rerank``, TEI's path:
    TEI's shape when the body has ``texts``, else the v1 shape."""
    import anyio.to_thread
    from fastapi import Request, Response

    RerankRequest = request_model()  # noqa: N806
    TeiRequest = tei_request_model()  # noqa: N806

    async def score(request: Request, response: Response, query: str, documents: list[str], field: str):
        """Check, encode and score one request's pairs; the raw scores and what was cut."""
        _check_request(query, documents, limits.max_documents, field)
        encoded = await anyio.to_thread.run_sync(encode_request, scorer.encoder, query, documents)
        _check_tokens(encoded, limits.max_request_tokens)
        scores = await until_disconnect(request.receive, batcher.submit(encoded.ids, encoded.types))
        if encoded.truncated:
            response.headers[TRUNCATED_HEADER] = str(encoded.truncated)
        return scores, encoded

    async def rerank_v1(body: RerankRequest, request: Request, response: Response) -> dict:
        scores, encoded = await score(request, response, body.query, body.documents, "documents")
        return rerank_body(name, scores, body, encoded, limits)

    async def rerank_v2(body: RerankRequest, request: Request, response: Response) -> dict:
        scores, encoded = await score(request, response, body.query, body.documents, "documents")
        return rerank_body(name, scores, body, encoded, limits, api_version=2)

    async def rerank_any(request: Request, response: Response):
        body = await _json_body(request)
        if isinstance(body, dict) and "texts" in body:
            request.state.tei = True  # errors from here on answer in TEI's shape too
            tei = _validated(TeiRequest, body)
            scores, _ = await score(request, response, tei.query, tei.texts, "texts")
            return tei_body(scores, tei)
        parsed = _validated(RerankRequest, body)
        scores, encoded = await score(request, response, parsed.query, parsed.documents, "documents")
        return rerank_body(name, scores, parsed, encoded, limits)

    app.post("/v1/rerank", dependencies=[auth])(rerank_v1)
    app.post("/v2/rerank", dependencies=[auth])(rerank_v2)
    app.post("/rerank", dependencies=[auth], include_in_schema=False)(rerank_any)


async def _json_body(request) -> Any:
    """The parsed JSON body; malformed JSON fails as FastAPI fails it for a typed body (422)."""
    from fastapi.exceptions import RequestValidationError

    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        pos = getattr(exc, "pos", getattr(exc, "start", 0))
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", pos), "msg": "JSON decode error",
                                       "ctx": {"error": str(exc)}}]) from exc


def _validated(model, body: Any):
    """``body`` as ``model``; a mismatch fails as FastAPI fails a typed body (422, with pydantic's errors)."""
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from exc


def _check_request(query: str, documents: list[str], max_documents: int, field: str) -> None:
    """The checks a request model cannot state: a non-blank query, and between 1 and ``max_documents`` documents
    (``field``: what the request calls them, ``documents`` or TEI's ``texts``)."""
    from fastapi import HTTPException

    if not query.strip():
        raise HTTPException(422, detail="query is empty: send the search query as a non-empty string")
    if not documents:
        raise HTTPException(422, detail=f"{field} is empty: send at least one document to re-rank")
    if len(documents) > max_documents:
        raise HTTPException(
            422,
            detail=f"{len(documents)} {field} is more than this server's limit of {max_documents} per request; "
            "split the request (or start the server with a higher max_documents)",
        )


def _check_tokens(encoded: EncodedRequest, max_request_tokens: int) -> None:
    """413 for a request whose pairs, cut to the budgets, hold more than ``max_request_tokens`` tokens."""
    from fastapi import HTTPException

    tokens = encoded.tokens
    if tokens > max_request_tokens:
        raise HTTPException(
            413,
            detail=f"{tokens} tokens to score (after cutting each text to the model's budget) is more than this server's "
            f"limit of {max_request_tokens} per request; split the request (or start the server with a higher "
            "max_request_tokens)",
        )


def encode_request(encoder, query: str, documents: list[str]) -> EncodedRequest:
    """Token ids of each (query, document) pair, cut as ``rerank`` cuts them, and which texts were cut."""
    cut_q: set[str] = set()
    cut_p: set[str] = set()
    ids, types = encoder.encode([query] * len(documents), documents, cut_q, cut_p)
    return EncodedRequest(ids, types, bool(cut_q), [i for i, d in enumerate(documents) if d in cut_p])


@dataclass(frozen=True)
class Server:
    """A loaded model behind its app, ready to listen (:func:`create_server`); :meth:`run` serves until interrupted."""

    app: Any
    model: str
    host: str
    port: int
    dtype: str
    device: str
    auth: bool  # whether requests need the bearer token from ``api_key_env``
    api_key_env: str = API_KEY_ENV
    log_level: str = "info"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1/rerank"

    def summary(self) -> str:
        """One line for the operator: what is served where, and whether callers need a token."""
        auth = (f"bearer token from ${self.api_key_env}" if self.auth
                else f"off (set ${self.api_key_env} to require a bearer token)")
        return f"serving {self.model} ({self.dtype} on {self.device}) at {self.url}; auth {auth}"

    def run(self) -> None:
        """Listen until interrupted (uvicorn)."""
        import uvicorn

        uvicorn.run(self.app, host=self.host, port=self.port, log_level=self.log_level)


def create_server(
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
    max_request_tokens: int = DEFAULT_MAX_REQUEST_TOKENS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    api_key_env: str = API_KEY_ENV,
    log_level: str = "info",
) -> Server:
    """Load ``model`` and build its app, ready to :meth:`~Server.run`; :func:`serve` does both.

    Args: as :func:`serve`.

    Returns:
        The server, with what a caller may show before it listens (:meth:`Server.summary`).

    Raises:
        RankdistillError: FastAPI or uvicorn is not installed, ``$api_key_env`` is set but blank, a limit is out
            of range, or the model does not load.
    """
    try:
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise RankdistillError(f"serving needs uvicorn; {INSTALL_HINT}") from exc
    from rankdistill.reranking.scorer import CrossEncoderScorer

    api_key = _api_key(api_key_env)
    for key, value in KERNEL_CACHE_ENV.items():
        os.environ.setdefault(key, value)
    scorer = CrossEncoderScorer(
        model, dtype=dtype, device=device, batch_tokens=batch_tokens,
        max_query_length=max_query_length, max_passage_length=max_passage_length,
    )
    app = create_app(scorer, name=name, max_documents=max_documents, max_request_tokens=max_request_tokens,
                     max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s, max_batch_tokens=max_batch_tokens,
                     max_wait_ms=max_wait_ms, api_key=api_key, api_key_env=api_key_env)
    if api_key is None and host not in LOCAL_HOSTS:
        warnings.warn(f"listening on {host} without auth: anyone who reaches this port can use the model; set ${api_key_env}",
                      stacklevel=2)
    return Server(app, str(model), host, port, scorer.dtype, scorer.device, api_key is not None, api_key_env, log_level)


def _api_key(api_key_env: str) -> str | None:
    """The bearer token from the environment variable ``api_key_env``; None (no auth) when it is unset."""
    api_key = os.environ.get(api_key_env)
    if api_key is None:
        return None
    if not api_key.strip():
        raise RankdistillError(f"${api_key_env} is set but empty: set it to the bearer token, or unset it to serve without auth")
    return api_key.strip()


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
    max_request_tokens: int = DEFAULT_MAX_REQUEST_TOKENS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    api_key_env: str = API_KEY_ENV,
    log_level: str = "info",
) -> None:
    """Serve ``model`` over HTTP until interrupted: ``POST /v1/rerank``, ``/v2/rerank`` and ``/rerank`` (Cohere v1 and
    Jina, Cohere v2, text-embeddings-inference: :mod:`rankdistill.serving.schema`), ``GET /health``, ``GET /v1/models``. What is served where is logged (``rankdistill.serving.app``, INFO) before it listens.

    Args:
        model: a cross-encoder folder, hub id or short name (``minilm-l6``).
        host: the address to listen on (``0.0.0.0`` for every interface; warned about without auth).
        port: the port to listen on.
        name: the model name in responses and ``/v1/models`` (default: the folder name).
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_tokens: padded tokens per forward batch (the scorer's).
        max_query_length: query tokens kept (default: the model's, else 32).
        max_passage_length: document tokens kept (default: the model's, else 256).
        max_documents: most documents in one request (more: 422).
        max_request_tokens: most tokens scored for one request, after cutting each text to its budget (more: 413).
        max_body_bytes: largest request body (larger: 413).
        body_timeout_s: how long a request body may take to arrive (slower: 408).
        max_batch_tokens: real tokens of the requests scored together.
        max_wait_ms: how long a lone request waits for others to share its batches.
        api_key_env: the environment variable holding the bearer token; when it is set, every route but
            ``/health`` needs ``Authorization: Bearer <its value>``.
        log_level: uvicorn's log level.

    Raises:
        RankdistillError: as :func:`create_server`.
    """
    server = create_server(
        model, host=host, port=port, name=name, dtype=dtype, device=device, batch_tokens=batch_tokens,
        max_query_length=max_query_length, max_passage_length=max_passage_length, max_documents=max_documents,
        max_request_tokens=max_request_tokens, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s,
        max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, api_key_env=api_key_env, log_level=log_level,
    )
    log.info("%s", server.summary())
    server.run()
