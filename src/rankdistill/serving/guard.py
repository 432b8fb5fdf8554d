"""What keeps one caller from holding the server: a body-size limit, a body-read deadline, and disconnect detection.

A body over ``max_body_bytes`` is refused with 413 before it is read when its ``Content-Length`` says so, and as soon
as the bytes received pass the limit otherwise (chunked uploads); a body that has not fully arrived ``body_timeout_s``
after the app started reading it is refused with 408, so a slow sender holds one connection, never a worker. Both
answer JSON like every other error. Written here rather than taken from Starlette: its ``RequestBodyLimitMiddleware``
exists only in recent releases, answers plain text without naming the limit, and has no read deadline.

:func:`until_disconnect` races a request's scoring against its client going away, so a caller that hangs up while
queued is dropped from the batcher's queue instead of being scored for nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from rankdistill.serving.schema import error_body

# Starlette's HTTPException is imported when the guard is built: this module loads without the serve extra.


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready."""


class BodyGuard:
    """ASGI middleware: 413 for a body over ``max_body_bytes``, 408 for one slower than ``body_timeout_s``."""

    def __init__(self, app, max_body_bytes: int, body_timeout_s: float):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    def too_large(self, size: str) -> str:
        """The 413 message: what was sent, the limit, and the fix."""
        return (f"request body of {size} is more than this server's limit of {self.max_body_bytes} bytes; "
                "send fewer or shorter documents per request (or start the server with a higher max_body_bytes)")

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse

        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            # refused unread; uvicorn closes the connection after the answer since the body was not consumed
            await JSONResponse(error_body(self.too_large(f"{length} bytes")), status_code=413)(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        received = 0
        complete = False
        deadline: float | None = None

        async def guarded() -> dict:
            nonlocal received, complete, deadline
            if complete:  # the body is in: what follows is the disconnect message, which may come any time
                return await receive()
            if deadline is None:
                deadline = loop.time() + self.body_timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise HTTPException(
                    408, detail=f"request body not received within {self.body_timeout_s:g} s ({received} bytes arrived); "
                    "send the whole body at once (or start the server with a longer body_timeout_s)",
                ) from None
            if message["type"] != "http.request":
                complete = True
                return message
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise HTTPException(413, detail=self.too_large(f"at least {received} bytes"))
            complete = not message.get("more_body", False)
            return message

        await self.app(scope, guarded, send)


def _content_length(scope: dict) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _disconnected(receive: Callable[[], Awaitable[dict]]) -> None:
    """Returns once the ASGI server reports the client gone (the body has been read before this is awaited)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(receive: Callable[[], Awaitable[dict]], work: Awaitable[Any]) -> Any:
    """``work``'s result, unless the client disconnects first: then ``work`` is cancelled (a queued request leaves
    the batcher's queue) and :class:`ClientDisconnected` is raised."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the handler itself was cancelled: the work goes with it
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise ClientDisconnected
