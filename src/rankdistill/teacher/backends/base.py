"""The interface every teacher backend implements (hf, vllm, openai, replay).

Kept tiny and dependency-free so that the sliding-window driver (``teacher.listwise``) can treat a local
model, a remote server and a recording alike, and so that backends can be written in parallel. A backend's
class is built as ``Class(model=..., options=<its options model>, **inputs)`` (``make_backend``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rankdistill.teacher.prompts import Prompt


# Why a request was retried, as backends count them (``retries_<kind>``) and ``stats.json`` lists them.
RETRY_KINDS = ("http_429", "http_5xx", "connection", "timeout", "malformed")


@dataclass
class Generation:
    """One answered window."""

    text: str  # raw model output ("[4] > [2] > ...")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ranking: list[int] | None = None  # first-token mode: 0-based best-first order, text may be ""
    saved_tokens: int = 0  # decoded tokens saved by first-token mode


class Backend(Protocol):
    """A listwise teacher: answers prompts, reporting each answer as soon as it exists."""

    name: str  # "hf" | "vllm" | "openai" | "replay"
    model_id: str  # part of the cache key
    # Optional: a backend that sends prompts a few at a time (a server with bounded concurrency) declares
    # ``on_send = None``; the caller then sets it to a callable ``on_send(i)`` for the length of a ``generate`` call,
    # to be called just before prompt ``i``'s first request leaves. The caller marks each window as sent in the cache
    # there, so the windows a kill catches in flight are known exactly. Without it, every prompt of a ``generate``
    # call counts as sent when the call starts (true of batched local models).

    def generate(
        self,
        prompts: list["Prompt"],
        on_result: Callable[[int, Generation], None],
        *,
        max_new_tokens: int,
        first_token: bool = False,
    ) -> None:
        """Answer every prompt; call ``on_result(i, generation)`` as soon as prompt ``i`` is answered.

        Results may arrive in any order. The caller commits each one to the SQLite cache at once, so a
        crash loses no finished window. Raises ``RankdistillError`` for unrecoverable problems (bad key,
        unmatched replay prompt, model not found).
        """
        ...

    def close(self) -> None:
        """Release models, engines, connections."""
        ...
