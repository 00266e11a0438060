"""Engine-neutral halves of error translation: HTTP status -> error class, bulk item outcomes.

Both engines answer with the same JSON shapes here, so the dialects share these; what differs
(the clients' exception classes) stays in each dialect's ``_translate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from es_neural.errors import (
    AuthenticationError,
    BadRequestError,
    BulkItemError,
    ConflictError,
    EngineError,
    EngineOverloadedError,
    EngineUnavailableError,
    IndexNotFoundError,
)

if TYPE_CHECKING:
    from es_neural.dialects.base import BulkResult

__all__ = ["error_from_status", "translate_bulk_items"]

_BY_STATUS: dict[int, type[EngineError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: IndexNotFoundError,
    409: ConflictError,
    429: EngineOverloadedError,
    502: EngineUnavailableError,
    503: EngineUnavailableError,
    504: EngineUnavailableError,
}

_BY_TYPE: dict[str, type[EngineError]] = {
    "resource_already_exists_exception": ConflictError,
    "index_not_found_exception": IndexNotFoundError,
    "es_rejected_execution_exception": EngineOverloadedError,
    "rejected_execution_exception": EngineOverloadedError,
    "circuit_breaking_exception": EngineOverloadedError,
    "illegal_argument_exception": BadRequestError,
    "mapper_parsing_exception": BadRequestError,
    "document_parsing_exception": BadRequestError,
    "strict_dynamic_mapping_exception": BadRequestError,
}


def error_from_status(
    status: int | str | None,
    message: str,
    *,
    error_type: str | None = None,
    info: Any = None,
) -> EngineError:
    """The project's error for an engine response with ``status`` (and ``error_type``)."""
    code = status if isinstance(status, int) else None
    cls = _BY_TYPE.get(error_type or "") or _BY_STATUS.get(code or 0)
    if cls is None:
        cls = EngineUnavailableError if code is not None and code >= 500 else EngineError
    # A mapping conflict is a 400 "illegal_argument_exception" mentioning the field's type.
    if cls is BadRequestError and "cannot be changed from type" in message:
        cls = ConflictError
    return cls(message, status=code, error_type=error_type, info=info)


def translate_bulk_items(response: Mapping[str, Any]) -> BulkResult:
    """Split a bulk response into written ids and per-item failures (with reasons)."""
    from es_neural.dialects.base import BulkResult  # base imports this module

    succeeded: list[str] = []
    failed: list[BulkItemError] = []
    for item in response.get("items", []):
        (outcome,) = item.values()
        doc_id = str(outcome.get("_id"))
        status = int(outcome.get("status", 500))
        error = outcome.get("error")
        if error is None and status < 300:
            succeeded.append(doc_id)
            continue
        if status == 404 and "delete" in item and error is None:
            succeeded.append(doc_id)  # deleting what is already gone
            continue
        error_type = error.get("type", "unknown") if isinstance(error, dict) else "unknown"
        reason = error.get("reason", "") if isinstance(error, dict) else str(error)
        caused = error.get("caused_by") if isinstance(error, dict) else None
        if isinstance(caused, dict) and caused.get("reason"):
            reason = f"{reason} (caused by {caused.get('type')}: {caused['reason']})"
        failed.append(BulkItemError(doc_id, status, error_type, reason or "no reason given"))
    return BulkResult(
        succeeded=tuple(succeeded), failed=tuple(failed), took_ms=int(response.get("took", 0))
    )
