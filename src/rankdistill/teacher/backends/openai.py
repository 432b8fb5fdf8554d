"""Teacher backend for any OpenAI-compatible chat-completions server (vLLM serve, SGLang, Ollama, hosted APIs).

Why it looks the way it does:
- Windows of one sliding step are independent, so they are sent concurrently (httpx AsyncClient, at most
  ``concurrency`` requests in flight, one asyncio.Semaphore) while the caller sees a plain synchronous
  ``generate``. The event loop lives in a private thread; answers are handed back through a queue and
  ``on_result`` always runs in the caller's thread (the SQLite cache connection is not shared across
  threads, and a notebook's running event loop is left alone).
- Transient failures (HTTP 429, 5xx, timeouts, connection errors, and malformed answers: not JSON or no
  choices) are retried up to ``max_retries`` times with exponential backoff and full jitter
  (delay ~ U(0, min(backoff_max, backoff_base * 2**attempt))); a ``Retry-After`` header (seconds or an
  HTTP date) is a floor on the delay. Other 4xx are user problems: a ``RankdistillError`` naming the
  status and the server's message.
- A malformed answer that is still malformed after the last retry is returned as empty text: the parser
  then keeps the window's previous order (counted there as "garbage" + "missing" repairs) and the backend counts it
  in ``stats["malformed_gave_up"]``, so one broken window never stops a long run. Persistent 429/5xx/
  timeouts raise instead: the server is down or overloaded, and finished windows are already committed.
- The API key is read from the environment variable named by ``api_key_env``; a missing variable sends no
  Authorization header (local servers need none). The key is kept out of reprs, messages and logs: every
  server message quoted in an error is scrubbed of it.
- ``httpx`` is imported where requests are made, not with this module, so ``OpenAIOptions`` can check a
  config without it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timezone
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rankdistill.errors import RankdistillError
from rankdistill.teacher.backends.base import RETRY_KINDS, Generation

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from rankdistill.teacher.prompts import Prompt

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 600.0  # never sleep longer than this for one Retry-After, whatever the server says


class OpenAIOptions(BaseModel):
    """The openai backend's options (``backend_options`` of ``teach()``, ``options:`` in a config)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(..., description="The server's OpenAI API root, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the key (unset: no key sent).")
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")
    timeout: float = Field(60.0, gt=0, description="Seconds one request may take, all of it.")
    max_retries: int = Field(6, ge=0, description="Retries per window on 429, 5xx, timeouts and malformed answers.")
    temperature: float = Field(0.0, description="Sampling temperature sent with each request (0: greedy).")
    backoff_base: float = Field(0.5, ge=0, description="First retry's backoff ceiling in seconds; doubles each retry.")
    backoff_max: float = Field(30.0, ge=0, description="Cap on one backoff ceiling, in seconds.")
    seed: int | None = Field(None, description="Seed of the backoff jitter (timing only, never results).")

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:8000/v1")
        return value


class _Retryable(Exception):
    """One failed attempt that may succeed when repeated."""

    def __init__(self, kind: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        assert kind in RETRY_KINDS, kind
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date; None if absent/unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        now = time.time() if now is None else now
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random, retry_after: float | None = None) -> float:
    """Full-jitter exponential backoff for retry number ``attempt`` (0-based); ``retry_after`` is a floor."""
    delay = rng.uniform(0.0, min(cap, base * (2.0**attempt)))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _server_message(response: httpx.Response) -> str:
    """The error text an OpenAI-style server puts in its body (``{"error": {"message": ...}}``), else the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)[:500]
    return json.dumps(body)[:500]


class OpenAIBackend:
    """Chat completions against ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``) with retries and bounded concurrency."""

    name = "openai"

    def __init__(self, model: str, options: OpenAIOptions):
        if not model:
            raise RankdistillError("the openai backend needs model (the model name the server serves)")
        self.model = model
        self.model_id = model
        self.base_url = options.base_url.rstrip("/")
        self.api_key_env = options.api_key_env
        self.concurrency = options.concurrency
        self.timeout = options.timeout
        self.max_retries = options.max_retries
        self.temperature = options.temperature
        self.backoff_base = options.backoff_base
        self.backoff_max = options.backoff_max
        self._rng = random.Random(options.seed)  # jitter only: it changes timing, never results
        self.__key = os.environ.get(options.api_key_env) or None
        # Counters teach() can copy into stats.json: requests, retries by kind, malformed answers given up on.
        self.stats: Counter[str] = Counter()
        self.on_send: Callable[[int], None] | None = None  # see Backend: called as a prompt's first request leaves
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:  # no key here, ever
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"

    # -- event loop in a private thread -------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="rankdistill-openai", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def _make_client(self) -> httpx.AsyncClient:
        import httpx

        headers = {"Content-Type": "application/json"}
        if self.__key:
            headers["Authorization"] = f"Bearer {self.__key}"
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )

    def _scrub(self, text: str) -> str:
        """Remove the key from any text that may reach the user (servers echo keys in 401 messages)."""
        if self.__key:
            text = text.replace(self.__key, "***")
        return text

    # -- one request ----------------------------------------------------------------------------------

    def _body(self, prompt: Prompt, max_new_tokens: int) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": prompt.messages,
            "temperature": self.temperature,
            "max_tokens": int(max_new_tokens),
        }

    def _fatal(self, response: httpx.Response) -> RankdistillError:
        status = response.status_code
        message = self._scrub(_server_message(response))
        where = f"{self.base_url}/chat/completions"
        if status in (401, 403):
            hint = (
                f"check the key in ${self.api_key_env}"
                if self.__key
                else f"${self.api_key_env} is not set: export the key there (or name another variable with api_key_env)"
            )
            return RankdistillError(f"{where} refused the request (HTTP {status}: {message}); {hint}")
        if status == 404:
            return RankdistillError(
                f"{where} answered HTTP 404 ({message}); check base_url (it usually ends in /v1) and model {self.model!r}"
            )
        return RankdistillError(f"{where} rejected the request (HTTP {status}: {message})")

    def _answer(self, response: httpx.Response) -> Generation:
        try:
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Retryable("malformed", f"malformed answer ({type(exc).__name__}: {exc})") from None
        usage = body.get("usage") or {}
        return Generation(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )

    async def _attempt(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, body: dict[str, Any],
                       sending: Callable[[], None] | None = None) -> Generation:
        import httpx

        async with sem:
            if sending is not None:
                sending()
            self.stats["requests"] += 1
            try:
                # httpx's timeout bounds each read; wait_for bounds the whole request (a server trickling bytes)
                response = await asyncio.wait_for(client.post("/chat/completions", json=body), self.timeout)
            except (httpx.TimeoutException, TimeoutError) as exc:
                raise _Retryable("timeout", f"no answer within {self.timeout:g} s ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                raise _Retryable("connection", f"connection error ({type(exc).__name__}: {self._scrub(str(exc))})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            kind = "http_429" if status == 429 else "http_5xx"
            detail = f"HTTP {status}: {self._scrub(_server_message(response))}"
            raise _Retryable(kind, detail, parse_retry_after(response.headers.get("retry-after")))
        if status >= 400:
            raise self._fatal(response)
        if status != 200:
            raise _Retryable("malformed", f"unexpected HTTP {status}")
        return self._answer(response)

    async def _one(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, body: dict[str, Any],
                   sending: Callable[[], None] | None = None) -> Generation:
        # Retry loop by hand (not tenacity / the openai SDK): malformed 200s must retry too, retries are counted
        # by kind for stats.json, and Retry-After is a floor on a full-jitter delay, not a cap at 60 s.
        for attempt in range(self.max_retries + 1):
            try:
                return await self._attempt(client, sem, body, sending if attempt == 0 else None)
            except _Retryable as failure:
                last = failure
                if attempt == self.max_retries:
                    break
                delay = backoff_delay(attempt, self.backoff_base, self.backoff_max, self._rng, failure.retry_after)
                self.stats["retries"] += 1
                self.stats[f"retries_{failure.kind}"] += 1
                log.info("retrying a window in %.2f s after %s (attempt %d of %d)", delay, failure.detail, attempt + 1, self.max_retries)
                await asyncio.sleep(delay)
        if last.kind == "malformed":
            self.stats["malformed_gave_up"] += 1
            log.warning("giving up on a malformed answer after %d retries; the window keeps its previous order", self.max_retries)
            return Generation(text="")
        raise RankdistillError(
            f"{self.base_url}/chat/completions failed {self.max_retries + 1} times for one window "
            f"(last: {last.detail}); finished windows are saved, rerun the same command to continue "
            "(or raise max_retries / timeout)"
        )

    async def _run(self, prompts: list[Prompt], out: queue.Queue, max_new_tokens: int) -> None:
        if self._client is None:
            self._client = self._make_client()
        client = self._client
        sem = asyncio.Semaphore(self.concurrency)

        on_send = self.on_send

        async def task(i: int, prompt: Prompt) -> None:
            sending = (lambda: on_send(i)) if on_send is not None else None
            out.put((i, await self._one(client, sem, self._body(prompt, max_new_tokens), sending)))

        tasks = [asyncio.ensure_future(task(i, p)) for i, p in enumerate(prompts)]
        try:
            for done in asyncio.as_completed(tasks):
                await done  # re-raises the first fatal error; the finally block cancels the rest
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- the Backend interface ------------------------------------------------------------------------

    def generate(
        self,
        prompts: list[Prompt],
        on_result: Callable[[int, Generation], None],
        *,
        max_new_tokens: int,
        first_token: bool = False,
    ) -> None:
        """Send all prompts concurrently; ``on_result`` runs in this thread as each answer arrives."""
        if first_token:
            raise RankdistillError(
                "first_token needs the model's first-token logits: use backend hf or vllm "
                "(the openai backend decodes the whole permutation)"
            )
        if not prompts:
            return
        loop = self._ensure_loop()
        out: queue.Queue = queue.Queue()
        future = asyncio.run_coroutine_threadsafe(self._run(prompts, out, max_new_tokens), loop)
        delivered = 0
        try:
            while delivered < len(prompts):
                try:
                    i, generation = out.get(timeout=0.05)
                except queue.Empty:
                    if future.done() and out.empty():
                        future.result()  # raises the fatal error, if any
                        break
                    continue
                on_result(i, generation)
                delivered += 1
            future.result()
        except BaseException:
            # Ctrl-C, a failing on_result, or a fatal server error: stop the requests still in flight.
            future.cancel()
            try:
                future.result(timeout=5)
            except BaseException:  # noqa: BLE001 - the original exception is the one that matters
                pass
            raise

    def close(self) -> None:
        """Close the connection pool and stop the private event loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if self._client is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result(timeout=5)
            except Exception:  # noqa: BLE001 - closing a dead pool must not mask the real outcome
                pass
            self._client = None
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()
        self._loop = self._thread = None
