"""Every error the API answers with, mapped in one place to a JSON body and a status.

Clients always get ``{"error": {"type": ..., "message": ...}}`` (plus ``details`` for validation
errors), never a traceback, an engine's raw message or a server path. Messages of errors that
come from elsewhere (the engine, the models, bugs) are replaced by fixed, safe texts; the real
error is logged server side. Only :class:`~es_neural.errors.InvalidInputError` and the API's own
:class:`ApiError` carry messages written for clients.

==================================  ======  ==========================  ===========
error                               status  type                        Retry-After
==================================  ======  ==========================  ===========
request validation, InvalidInput    422     invalid_request
IndexNotFoundError                  404     index_not_found
ModelMismatchError                  409     model_mismatch
EngineUnavailableError              503     engine_unavailable          5
EngineOverloadedError               503     engine_overloaded           2
AuthenticationError (engine's)      502     engine_authentication
BadRequestError (engine refused)    400     query_rejected
other EngineError                   502     engine_error
ConfigurationError                  500     configuration_error
anything else                       500     internal_error
==================================  ======  ==========================  ===========
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from es_neural.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    EngineError,
    EngineOverloadedError,
    EngineUnavailableError,
    EsNeuralError,
    IndexNotFoundError,
    InvalidInputError,
    ModelMismatchError,
)

__all__ = [
    "ApiError",
    "CatchAllMiddleware",
    "ErrorBody",
    "ErrorDetail",
    "error_response",
    "install_error_handlers",
    "rule_for",
]

log = logging.getLogger("es_neural.api")


class ApiError(Exception):
    """An error the API raises itself; its message is meant for the client."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.retry_after = retry_after
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class _Rule:
    status: int
    type: str
    #: ``None``: the exception's own message is shown (only for errors written for clients).
    message: str | None
    retry_after: int | None = None
    #: Log the exception with its traceback (server faults), or one line (client faults).
    log_traceback: bool = False


_RULES: dict[type[BaseException], _Rule] = {
    InvalidInputError: _Rule(422, "invalid_request", None),
    IndexNotFoundError: _Rule(404, "index_not_found", "index not found"),
    ModelMismatchError: _Rule(
        409,
        "model_mismatch",
        "the index was built with other models than this server has loaded; "
        "serve it with the same models or re-index it",
    ),
    EngineUnavailableError: _Rule(
        503, "engine_unavailable", "the search engine is unavailable; retry later", 5
    ),
    EngineOverloadedError: _Rule(
        503, "engine_overloaded", "the search engine is overloaded; retry later", 2
    ),
    AuthenticationError: _Rule(
        502, "engine_authentication", "the search engine refused this server's credentials"
    ),
    BadRequestError: _Rule(
        400,
        "query_rejected",
        "the search engine refused the query (for example a filter value of the wrong type "
        "for its field)",
    ),
    EngineError: _Rule(502, "engine_error", "the search engine failed to answer", None, True),
    ConfigurationError: _Rule(
        500, "configuration_error", "the server is misconfigured; see its log", None, True
    ),
}
_INTERNAL = _Rule(500, "internal_error", "internal error", None, True)


def rule_for(exc: BaseException) -> _Rule:
    """The most specific rule for ``exc`` (by its class's MRO); unknown errors are internal."""
    for cls in type(exc).__mro__:
        rule = _RULES.get(cls)
        if rule is not None:
            return rule
    return _INTERNAL


class ErrorDetail(BaseModel):
    type: str
    message: str
    #: Validation errors: where (``loc``) and what (``msg``), without the echoed input.
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """What every error answer holds (for the OpenAPI description)."""

    error: ErrorDetail


def error_response(
    status: int,
    type: str,
    message: str,
    *,
    retry_after: int | None = None,
    details: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one shape of every error answer."""
    error: dict[str, Any] = {"type": type, "message": message}
    if details:
        error["details"] = list(details)
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = str(retry_after)
    return JSONResponse({"error": error}, status_code=status, headers=all_headers)


def response_for(exc: BaseException) -> JSONResponse:
    """Map any exception to its answer, logging it server side (never returning internals)."""
    if isinstance(exc, ApiError):
        return error_response(
            exc.status,
            exc.type,
            exc.message,
            retry_after=exc.retry_after,
            headers=exc.headers,
        )
    rule = rule_for(exc)
    if rule.log_traceback:
        log.error("%s: %s", rule.type, type(exc).__name__, exc_info=exc)
    else:
        log.info("%s: %s: %s", rule.type, type(exc).__name__, exc)
    message = rule.message if rule.message is not None else str(exc)
    return error_response(rule.status, rule.type, message, retry_after=rule.retry_after)


def _safe_value(value: Any) -> Any:
    """``value`` if it is plain JSON, else its string form (pydantic ``ctx`` holds exceptions)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic errors without the echoed input (which may be large or sensitive)."""
    details: list[dict[str, Any]] = []
    for err in errors[:20]:
        loc = [str(p) if not isinstance(p, int) else p for p in err.get("loc", ())]
        details.append(
            {
                "loc": loc,
                "msg": str(err.get("msg", "invalid"))[:500],
                "type": _safe_value(err.get("type", "value_error")),
            }
        )
    return details


def _validation_response(errors: Sequence[Any]) -> JSONResponse:
    details = validation_details(errors)
    summary = "the request is not valid"
    if details:
        first = details[0]
        if first["type"] == "json_invalid":
            summary = "the body is not valid JSON"
        else:
            where = ".".join(str(p) for p in first["loc"] if p != "body")
            summary = f"{where}: {first['msg']}" if where else str(first["msg"])
        if len(details) > 1:
            summary += f" (and {len(details) - 1} more)"
    return error_response(422, "invalid_request", summary, details=details)


_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


async def _on_request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _validation_response(exc.errors())


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    return _validation_response(exc.errors())


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request refused"
    return error_response(
        exc.status_code,
        _HTTP_TYPES.get(exc.status_code, "http_error"),
        detail,
        headers=exc.headers,
    )


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    return response_for(exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(ValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(ApiError, _on_error)
    app.add_exception_handler(EsNeuralError, _on_error)
    app.add_exception_handler(Exception, _on_error)


class CatchAllMiddleware:
    """Answers 500 ``internal error`` for anything that escaped the handlers (logged once here),
    so no traceback reaches a client and the server does not log the same error twice."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            await response_for(exc)(scope, receive, send)
