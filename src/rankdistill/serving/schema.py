"""The HTTP server's wire format, in one place: the ``/v1/rerank`` request model and every response body.

Request: ``{"query": str, "documents": [str | {"text": str}], "top_n": int?, "return_documents": bool?}``
(a ``model`` field is accepted and ignored: one model is served). Response: ``{"id", "model", "results": [{"index",
"relevance_score", "document"?}], "usage", "meta"}``, results sorted by score, highest first: the shape Cohere,
Jina and text-embeddings-inference share. Scores are the model's raw scores, the same as ``rankdistill rerank``
writes (not squashed into 0..1). A cut query or document is reported in ``meta`` and in the
``X-Rankdistill-Truncated`` header. Errors are ``{"detail": str}`` (validation errors add ``errors``).

Responses are plain dicts rather than response models: FastAPI would then validate and re-serialise every
response, and an absent ``document`` must stay absent, not ``null``.
"""

# No ``from __future__ import annotations``: pydantic reads the request model's annotations where it is built.
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Optional

TRUNCATED_HEADER = "X-Rankdistill-Truncated"


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
    """The pydantic model of a ``/v1/rerank`` request body (built on first use: pydantic loads with the server)."""
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
class EncodedRequest:
    """A request's pairs as token ids, and what was cut to fit the model's budgets."""

    ids: list[list[int]]
    types: list[list[int]]
    query_truncated: bool
    truncated_documents: list[int]  # indices into the request's documents

    @property
    def truncated(self) -> int:
        """How many texts were cut: the ``X-Rankdistill-Truncated`` header's value."""
        return len(self.truncated_documents) + int(self.query_truncated)


@dataclass(frozen=True)
class Limits:
    """What the server accepts, as ``/v1/models`` and each response's ``meta`` report it."""

    max_query_tokens: int
    max_document_tokens: int
    max_documents: int


def rerank_body(name: str, scores, request, encoded: EncodedRequest, limits: Limits) -> dict:
    """The ``/v1/rerank`` response: results best first (ties by input order), cut to ``top_n``."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))[: request.top_n]
    results = []
    for i in order:
        item: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
        if request.return_documents:
            item["document"] = {"text": request.documents[i]}
        results.append(item)
    return {
        "id": uuid.uuid4().hex,
        "model": name,
        "results": results,
        "usage": {"total_tokens": sum(len(x) for x in encoded.ids)},
        "meta": {
            "truncated": bool(encoded.truncated), "query_truncated": encoded.query_truncated,
            "truncated_documents": encoded.truncated_documents,
            "max_query_tokens": limits.max_query_tokens, "max_document_tokens": limits.max_document_tokens,
        },
    }


def models_body(name: str, created: int, dtype: str, device: str, limits: Limits) -> dict:
    """The ``/v1/models`` response (OpenAI's list shape): the one model served."""
    return {
        "object": "list",
        "data": [{
            "id": name, "object": "model", "created": created, "owned_by": "rankdistill",
            "dtype": dtype, "device": device, "max_query_tokens": limits.max_query_tokens,
            "max_document_tokens": limits.max_document_tokens, "max_documents": limits.max_documents,
        }],
    }


def health_body(name: str, requests: int, groups: int, pairs: int) -> dict:
    """The ``/health`` response, with the batcher's counters."""
    return {"status": "ok", "model": name, "requests": requests, "groups": groups, "pairs": pairs}


def error_body(detail: Any) -> dict:
    """Every error response: ``{"detail": ...}``."""
    return {"detail": detail}


def validation_error_body(errors: Sequence[dict]) -> dict:
    """A 422 for a body that does not fit :func:`request_model`: one readable line, and pydantic's errors."""
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
    return {"detail": f"invalid request: {_readable(errors)}", "errors": errors}


def _readable(errors: Sequence[dict]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        msg = str(err.get("msg", "invalid"))
        parts.append(f"{loc}: {msg.removeprefix('Value error, ')}")
    return "; ".join(parts)

