"""Teacher backends behind one interface: a name -> module registry, each module imported only when asked for.

Every backend declares its options as a pydantic model at the top of its own module (``HFOptions`` beside
``HFBackend``), and keeps its heavy imports (torch, vllm, httpx, sentence-transformers) inside functions, so
that a config can be checked (``validate_backend_options``) without loading a model library. The pointwise
``embedding`` teacher is registered here too for its options; ``teach()`` runs it itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from rankdistill.errors import RankdistillError
from rankdistill.teacher.backends.base import Backend, Generation
from rankdistill.util.config import describe_error


class BackendEntry(NamedTuple):
    """Where a backend lives: its module, its options model, and its ``Backend`` class (None: not listwise)."""

    module: str
    options: str
    backend: str | None


BACKENDS: dict[str, BackendEntry] = {
    "hf": BackendEntry("rankdistill.teacher.backends.hf", "HFOptions", "HFBackend"),
    "vllm": BackendEntry("rankdistill.teacher.backends.vllm", "VLLMOptions", "VLLMBackend"),
    "openai": BackendEntry("rankdistill.teacher.backends.openai", "OpenAIOptions", "OpenAIBackend"),
    "replay": BackendEntry("rankdistill.teacher.backends.replay", "ReplayOptions", "ReplayBackend"),
    "embedding": BackendEntry("rankdistill.teacher.embedding", "EmbeddingOptions", None),
}
LISTWISE = tuple(name for name, entry in BACKENDS.items() if entry.backend is not None)

__all__ = [
    "BACKENDS", "LISTWISE", "Backend", "BackendEntry", "Generation", "backend_entry", "make_backend", "options_model",
    "validate_backend_options",
]


def backend_entry(name: str) -> BackendEntry:
    """The registry entry of ``name``; an unknown name is a one-line error listing the known ones."""
    if name not in BACKENDS:
        raise RankdistillError(f"unknown teacher backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def options_model(backend: str) -> type[BaseModel]:
    """The pydantic model of ``backend``'s options (importing its module, never torch, vllm or httpx)."""
    entry = backend_entry(backend)
    return getattr(importlib.import_module(entry.module), entry.options)


def validate_backend_options(backend: str, options: Mapping[str, Any] | None, where: str = "options") -> BaseModel:
    """Check ``options`` against ``backend``'s options model and fill in its defaults.

    Args:
        backend: a name in ``BACKENDS`` (``hf``, ``vllm``, ``openai``, ``replay``, ``embedding``).
        options: the backend's keyword options; a key set to None means its default, as if it were absent.
        where: the name the caller knows the mapping by, which errors start with (``options.base_url: ...``).

    Returns:
        The validated options model (``HFOptions``, ``OpenAIOptions``, ...).

    Raises:
        RankdistillError: an unknown backend, or one line naming each bad key (``where.key: problem``), with the
            allowed keys for an unknown one.
    """
    model = options_model(backend)
    values = {key: value for key, value in (options or {}).items() if value is not None}
    if values and not model.model_fields:
        raise RankdistillError(f"{where}: the {backend} backend takes no options (got {', '.join(map(str, values))})")
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            text = describe_error(error, model)
            problems.append(f"{where}.{text}" if error["loc"] else f"{where}: {text.removeprefix('(top level): ')}")
        raise RankdistillError("; ".join(problems)) from None


def make_backend(name: str, model: str | None = None, *, options: Mapping[str, Any] | BaseModel | None = None,
                 where: str = "options", **inputs: Any) -> Backend:
    """Build the listwise backend ``name`` for ``model``.

    Args:
        name: one of ``LISTWISE`` (hf, vllm, openai, replay).
        model: the model name or path (replay: an optional label for the cache key instead of the file's digest).
        options: the backend's options, validated by its options model (or that model already built).
        where: how errors name ``options`` (see :func:`validate_backend_options`).
        **inputs: what a backend is built from besides its options (replay: ``replay_file``, ``replay_match``).

    Returns:
        The backend, ready to ``generate``.

    Raises:
        RankdistillError: an unknown or pointwise backend name, bad options, or the backend's own checks (model
            not found, vLLM not installed, ...).
    """
    entry = backend_entry(name)
    if entry.backend is None:
        raise RankdistillError(f"backend {name} is not a listwise LLM backend; teach() runs it")
    module = importlib.import_module(entry.module)
    if not isinstance(options, getattr(module, entry.options)):
        if isinstance(options, BaseModel):
            raise RankdistillError(f"backend {name} takes {entry.options}, not {type(options).__name__}")
        options = validate_backend_options(name, options, where)
    return getattr(module, entry.backend)(model=model, options=options, **inputs)
