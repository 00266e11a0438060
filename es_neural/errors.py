"""The project's error tree. Engine exceptions are translated into it once, in the dialect modules.

::

    EsNeuralError
    ├── ConfigurationError            bad settings, missing model files, unknown engine
    ├── EngineSetupError              a local engine cannot be fetched, installed or started
    ├── EngineError                   anything the engine said or failed to say
    │   ├── EngineUnavailableError    connection refused, timeout, 503 (transient)
    │   ├── EngineOverloadedError     429 / rejected execution (transient)
    │   ├── ShardsUnavailableError    a read missed shards (a node left mid-scan; transient)
    │   ├── AuthenticationError       401: the engine refused the credentials
    │   │   └── PermissionDeniedError 403: authenticated, but the role lacks a privilege
    │   ├── EngineTlsError            TLS failed: unknown CA, wrong host name, http vs https
    │   ├── IndexNotFoundError        404 on an index or alias
    │   ├── ConflictError             409, resource already exists, mapping conflict
    │   └── BadRequestError           400 the engine refused a body
    ├── BulkError                     some items of a bulk request failed permanently
    ├── ModelMismatchError            encoder / tree fingerprint differs from the index `_meta`
    └── InvalidInputError             user input refused before reaching an engine
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BulkError",
    "BulkItemError",
    "ConfigurationError",
    "ConflictError",
    "EngineError",
    "EngineOverloadedError",
    "EngineSetupError",
    "EngineTlsError",
    "EngineUnavailableError",
    "EsNeuralError",
    "IndexNotFoundError",
    "InvalidInputError",
    "ModelMismatchError",
    "PermissionDeniedError",
    "ShardsUnavailableError",
]


class EsNeuralError(Exception):
    """Base of every error es-neural raises on purpose."""


class ConfigurationError(EsNeuralError):
    pass


class EngineSetupError(EsNeuralError):
    pass


class EngineError(EsNeuralError):
    """An engine call failed. ``status`` is the HTTP status when there was one."""

    #: Whether retrying the same call later may succeed.
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        info: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.info = info


class EngineUnavailableError(EngineError):
    transient = True


class EngineOverloadedError(EngineError):
    transient = True


class ShardsUnavailableError(EngineError):
    """A page of a point-in-time read came back from only some shards (a node holding the
    point in time left): the read must start again from a new point in time."""

    transient = True


class AuthenticationError(EngineError):
    """The engine refused the credentials (401), or (subclass) the privileges (403). Messages
    name the URL and the user, never a password or API key."""


class PermissionDeniedError(AuthenticationError):
    """403: the credentials are valid but the user's roles do not grant the action."""


class EngineTlsError(EngineError):
    """The TLS connection failed: the certificate is not signed by the configured CA, names
    another host, or one side speaks plain http. Not transient: retrying cannot fix it."""


class IndexNotFoundError(EngineError):
    pass


class ConflictError(EngineError):
    pass


class BadRequestError(EngineError):
    pass


@dataclass(frozen=True, slots=True)
class BulkItemError:
    """One document that a bulk request did not write."""

    doc_id: str
    status: int
    error_type: str
    reason: str

    @property
    def transient(self) -> bool:
        return self.status in (429, 502, 503, 504) or self.error_type in {
            "es_rejected_execution_exception",
            "rejected_execution_exception",
            "unavailable_shards_exception",
            "cluster_block_exception",
        }


@dataclass
class BulkError(EsNeuralError):
    """Items of a bulk write failed permanently; ``written`` others were written."""

    items: Sequence[BulkItemError]
    written: int = 0
    message: str = field(default="")

    def __post_init__(self) -> None:
        if not self.message:
            first = self.items[0] if self.items else None
            detail = f"; first: {first.doc_id}: {first.error_type}: {first.reason}" if first else ""
            self.message = f"{len(self.items)} bulk item(s) failed, {self.written} written{detail}"
        super().__init__(self.message)


class ModelMismatchError(EsNeuralError):
    pass


class InvalidInputError(EsNeuralError, ValueError):
    pass
