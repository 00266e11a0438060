"""What stands between a client and a search: API keys, body size, and bounded concurrency.

* :class:`ApiKeyMiddleware` refuses requests without a valid key before their body is read.
  Keys are kept only as SHA-256 digests and compared with :func:`hmac.compare_digest` against
  every configured key (no early exit), so timing tells nothing about a key or which one matched.
* :class:`BodyLimitMiddleware` answers 413 for a too-large ``Content-Length`` and stops reading a
  body (chunked or lying about its length) as soon as it passes the limit.
* :class:`SearchGate` runs blocking searches in a fixed pool of worker threads, lets at most
  ``max_queue`` more wait, and bounds each request's time. A timed-out search keeps its slot
  until its thread really finishes, so a slow engine cannot pile up threads: new requests get
  503 + ``Retry-After`` instead of joining an unbounded queue.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import math
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from es_neural.api.errors import ApiError, error_response

__all__ = ["ApiKeyMiddleware", "BodyLimitMiddleware", "SearchGate", "key_matches"]

T = TypeVar("T")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def key_matches(candidate: str | None, digests: Sequence[bytes]) -> bool:
    """Whether ``candidate`` is one of the keys behind ``digests``, in constant time."""
    probe = _digest(candidate or "")
    matched = False
    for digest in digests:
        matched |= hmac.compare_digest(probe, digest)
    return matched and candidate is not None


def _presented_key(headers: Headers) -> str | None:
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key")


class ApiKeyMiddleware:
    """Requires ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` outside public paths."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Sequence[SecretStr],
        public_paths: Collection[str] = (),
        public_prefixes: Sequence[str] = (),
    ) -> None:
        self.app = app
        self._digests = tuple(_digest(k.get_secret_value()) for k in keys)
        self._public_paths = frozenset(public_paths)
        self._public_prefixes = tuple(public_prefixes)

    def _is_public(self, path: str) -> bool:
        return path in self._public_paths or path.startswith(self._public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._digests and not self._is_public(scope["path"]):
            presented = _presented_key(Headers(scope=scope))
            if not key_matches(presented, self._digests):
                response = error_response(
                    401,
                    "unauthorized",
                    "missing or invalid API key (send 'Authorization: Bearer <key>' or "
                    "'X-API-Key: <key>')",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` (by header, then by counting what arrives)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                await error_response(400, "bad_request", "invalid Content-Length")(
                    scope, receive, send
                )
                return
            if length > self.max_bytes:
                too_large = BodyTooLarge(self.max_bytes)
                await error_response(413, "body_too_large", too_large.detail)(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


class SearchGate:
    """Runs blocking calls in ``max_concurrency`` threads with a bounded queue and a timeout."""

    def __init__(self, *, max_concurrency: int, max_queue: int, timeout_s: float) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="es-neural-search"
        )
        self._capacity = max_concurrency + max_queue
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Calls queued or running, timed-out ones whose thread still runs included."""
        with self._lock:
            return self._pending

    def _release(self, _: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread; 503 when saturated, 504 past the timeout."""
        with self._lock:
            if self._pending >= self._capacity:
                raise ApiError(
                    503,
                    "overloaded",
                    "too many searches in progress; retry later",
                    retry_after=1,
                )
            self._pending += 1
        try:
            future = self._executor.submit(contextvars.copy_context().run, fn)
        except RuntimeError:  # shutting down
            with self._lock:
                self._pending -= 1
            raise ApiError(
                503, "shutting_down", "the server is shutting down", retry_after=5
            ) from None
        future.add_done_callback(self._release)
        try:
            # On timeout the wrapped future is cancelled, which cancels a still-queued call;
            # a running one finishes in its thread and frees its slot then.
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            raise ApiError(
                504,
                "timeout",
                f"the search did not finish within {self.timeout_s:g} s; retry later",
                retry_after=max(1, math.ceil(self.timeout_s)),
            ) from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
