"""The HTTP server's wire format, in one place: the request models and every response body, in three shapes.

- Cohere v1 / Jina, ``POST /v1/rerank`` (and ``POST /rerank`` without ``texts``): ``{"query": str, "documents":
  [str | {"text": str}], "top_n": int?, "return_documents": bool?}`` (a ``model`` field is accepted and ignored: one
  model is served) answers ``{"id", "model", "results": [{"index", "relevance_score", "document"?}], "usage",
  "meta"}``, results sorted by score, highest first.
- Cohere v2, ``POST /v2/rerank`` (what ``cohere.ClientV2(...).rerank`` calls): the same request, plus
  ``max_tokens_per_doc`` (accepted; documents are cut to the server's budget, and ``meta.warnings`` says so when the
  two differ); the same answer, with ``meta.api_version`` 2.
- text-embeddings-inference, ``POST /rerank`` with ``texts``: ``{"query": str, "texts": [str], "raw_scores": bool?,
  "return_text": bool?, "truncate": bool?, "truncation_direction": "right"?}`` answers a bare list of ``{"index",
  "score", "text"?}``, highest first; as TEI, scores are squashed by a sigmoid unless ``raw_scores``, and errors add
  TEI's ``error`` and ``error_type``. Texts are always cut to the model's budgets (``truncate`` is accepted).

Scores of the Cohere shapes are the model's raw scores, the same as ``rankdistill rerank`` writes (not squashed into
0..1). A cut query or document is reported in ``meta`` (Cohere shapes) and in the ``X-Rankdistill-Truncated``
header (all). Errors are ``{"detail": str}`` (validation errors add ``errors``).

Responses are plain dicts rather than response models: FastAPI would then validate and re-serialise every
response, and an absent ``document`` must stay absent, not ``null``.
"""

# No ``from __future__ import annotations``: pydantic reads the request model's annotations where it is built.
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

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
        max_tokens_per_doc: Optional[int] = Field(
            None, ge=1, description="Cohere v2's; accepted, but documents are cut to the server's own budget.")

    return RerankRequest


@functools.cache
def tei_request_model():
    """The pydantic model of a text-embeddings-inference ``/rerank`` request body."""
    from pydantic import BaseModel, ConfigDict, Field

    class TeiRerankRequest(BaseModel):
        model_config = ConfigDict(extra="ignore")

        query: str
        texts: list[str]
        raw_scores: bool = Field(False, description="The model's raw scores; otherwise squashed by a sigmoid, as TEI does.")
        return_text: bool = False
        truncate: Optional[bool] = Field(None, description="Accepted; texts are always cut to the model's budgets.")
        truncation_direction: Literal["right", "Right"] = Field(
            "right", description="Only 'right': the start of each text is kept, as rerank keeps it.")

    return TeiRerankRequest


@dataclass
class EncodedRequest:
    """A request's pairs as token ids, and what was cut to fit the model's budgets."""

    ids: list[list[int]]
    types: list[list[int]]
    query_truncated: bool
    truncated_documents: list[int]  # indices into the request's documents

    @property
    def tokens(self) -> int:
        """Tokens of all pairs, as scored: the request's cost, and ``usage.total_tokens``."""
        return sum(len(x) for x in self.ids)

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
    max_request_tokens: int  # tokens scored for one request, after cutting to the budgets
    max_body_bytes: int


def _best_first(scores) -> list[int]:
    """Indices by score, highest first; ties keep input order."""
    return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))


def rerank_body(name: str, scores, request, encoded: EncodedRequest, limits: Limits, api_version: int = 1) -> dict:
    """The Cohere-shaped response (``/v1/rerank``, ``/v2/rerank``): results best first, cut to ``top_n``."""
    order = _best_first(scores)[: request.top_n]
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
        "usage": {"total_tokens": encoded.tokens},
        "meta": {
            "truncated": bool(encoded.truncated), "query_truncated": encoded.query_truncated,
            "truncated_documents": encoded.truncated_documents,
            "max_query_tokens": limits.max_query_tokens, "max_document_tokens": limits.max_document_tokens,
            "api_version": {"version": str(api_version)},
            **({"warnings": warnings} if (warnings := _warnings(request, limits)) else {}),
        },
    }


def _warnings(request, limits: Limits) -> list[str]:
    """What the server did differently from what the request asked (Cohere's ``meta.warnings``)."""
    asked = getattr(request, "max_tokens_per_doc", None)
    if asked is not None and asked != limits.max_document_tokens:
        return [f"max_tokens_per_doc={asked} is not applied: documents are cut to this model's budget of "
                f"{limits.max_document_tokens} tokens"]
    return []


def tei_body(scores, request) -> list[dict]:
    """The text-embeddings-inference ``/rerank`` response: ``[{"index", "score", "text"?}]`` best first; scores
    through a sigmoid unless ``raw_scores``, as TEI gives them for a one-label model."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    shown = scores if request.raw_scores else np.exp(-np.logaddexp(0.0, -scores))  # a sigmoid that cannot overflow
    results = []
    for i in _best_first(scores):
        item: dict[str, Any] = {"index": i, "score": float(shown[i])}
        if request.return_text:
            item["text"] = request.texts[i]
        results.append(item)
    return results


def models_body(name: str, created: int, dtype: str, device: str, limits: Limits) -> dict:
    """The ``/v1/models`` response (OpenAI's list shape): the one model served."""
    return {
        "object": "list",
        "data": [{
            "id": name, "object": "model", "created": created, "owned_by": "rankdistill",
            "dtype": dtype, "device": device, "max_query_tokens": limits.max_query_tokens,
            "max_document_tokens": limits.max_document_tokens, "max_documents": limits.max_documents,
            "max_request_tokens": limits.max_request_tokens, "max_body_bytes": limits.max_body_bytes,
        }],
    }


def health_body(name: str, requests: int, groups: int, pairs: int, dropped: int) -> dict:
    """The ``/health`` response, with the batcher's counters (``dropped``: callers gone before they were scored)."""
    return {"status": "ok", "model": name, "requests": requests, "groups": groups, "pairs": pairs, "dropped": dropped}


def error_body(detail: Any) -> dict:
    """Every error response: ``{"detail": ...}``."""
    return {"detail": detail}


def tei_error_body(body: dict, status: int) -> dict:
    """An error answer to a TEI-shaped request: ours plus TEI's ``error`` and ``error_type``, which TEI clients read."""
    error_type = "Backend" if status >= 500 else "Overloaded" if status == 429 else "Validation"
    return {**body, "error": str(body.get("detail")), "error_type": error_type}


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

