"""Engine-neutral halves of error translation: HTTP status -> error class, bulk item outcomes,
authentication and TLS failures.

Both engines answer with the same JSON shapes here, so the dialects share these; what differs
(the clients' exception classes) stays in each dialect's ``_translate``. Messages built here name
the URL (without any ``user:password@``) and the user, never a password or API key.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from es_neural.dialects.bulk import BulkResult
from es_neural.errors import (
    AuthenticationError,
    BadRequestError,
    BulkItemError,
    ConflictError,
    EngineError,
    EngineOverloadedError,
    EngineTlsError,
    EngineUnavailableError,
    IndexNotFoundError,
    PermissionDeniedError,
)
from es_neural.settings import EngineSettings, parse_urls

__all__ = [
    "auth_error",
    "check_plain_http",
    "error_from_status",
    "plain_http_error",
    "plain_http_to_tls",
    "redact_url",
    "tls_error",
    "translate_bulk_items",
]

logger = logging.getLogger(__name__)

_BY_STATUS: dict[int, type[EngineError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
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
    # index settings that do not parse: Elasticsearch answers 500, nothing a retry mends
    "settings_exception": BadRequestError,
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


# ----- authentication and TLS -----


def redact_url(url: str | Sequence[str]) -> str:
    """``url`` (one, several comma-joined as a user writes them, or :attr:`EngineSettings.urls`)
    without ``user:password@`` parts, comma-joined."""
    parts = []
    for one in parse_urls(url) if isinstance(url, str) else url:
        split = urlsplit(one)
        if split.username is not None or split.password is not None:
            host = split.netloc.rsplit("@", 1)[1]
            one = split._replace(netloc=host).geturl()
        parts.append(one)
    return ",".join(parts)


def _who(settings: EngineSettings) -> str:
    if settings.api_key is not None:
        return "the API key"
    if settings.username is not None:
        return f"user {settings.username!r}"
    return "an anonymous request (no credentials configured)"


def auth_error(
    engine: str,
    settings: EngineSettings,
    status: int,
    detail: str,
    *,
    error_type: str | None = None,
    info: Any = None,
) -> AuthenticationError:
    """401: the credentials were refused; 403: they lack a privilege. ``detail`` is the engine's
    reason (which names users and actions, never secrets)."""
    url = redact_url(settings.urls)
    if status == 403:
        return PermissionDeniedError(
            f"{engine} at {url}: permission denied for {_who(settings)} (HTTP 403): {detail}",
            status=status,
            error_type=error_type,
            info=info,
        )
    return AuthenticationError(
        f"{engine} at {url} refused the credentials of {_who(settings)} (HTTP {status}): "
        f"{detail}; check the username/password or api_key",
        status=status,
        error_type=error_type,
        info=info,
    )


def tls_error(engine: str, settings: EngineSettings, detail: str) -> EngineTlsError:
    """What a TLS failure means, from the ssl module's reason (``detail``)."""
    url = redact_url(settings.urls)
    low = detail.lower()
    if "certificate verify failed" in low or "certificate_verify_failed" in low:
        if "mismatch" in low or "doesn't match" in low:
            cause = "the engine's certificate is not valid for this host name (check the URL)"
        elif "expired" in low:
            cause = "the engine's certificate has expired"
        elif settings.ca_certs is not None:
            cause = (
                "the engine's certificate is not signed by the configured CA "
                f"(ca_certs={settings.ca_certs})"
            )
        else:
            cause = (
                "the engine's certificate is not signed by a CA this machine trusts: set "
                "ca_certs to the CA that signed it"
            )
    elif any(
        marker in low
        for marker in ("wrong version number", "wrong_version_number", "record layer failure")
    ):
        cause = "the engine does not speak TLS on this port: use an http:// URL or turn TLS on"
    else:
        cause = "the TLS handshake failed"
    return EngineTlsError(f"{engine} at {url}: {cause} ({detail})")


def _serves_tls(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` completes a TLS handshake (certificate not checked: only asking
    which protocol the port speaks; nothing is sent after the handshake)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


#: How a TLS port answers a plain-http request: it closes the connection without a response.
#: (A refused connection or a timeout is something else: no port is asked then.)
_PLAIN_HTTP_SYMPTOMS = ("remotedisconnected", "connection aborted", "badstatusline")


def plain_http_to_tls(settings: EngineSettings, detail: str, *, timeout: float = 1.0) -> str | None:
    """After a connection failure described by ``detail``: the first ``http://`` URL of
    ``settings`` whose port speaks TLS, else None. Ports are asked only when ``detail`` looks
    like a TLS port hanging up on plain http."""
    if not any(symptom in detail.lower() for symptom in _PLAIN_HTTP_SYMPTOMS):
        return None
    for one in settings.urls:
        split = urlsplit(one)
        if split.scheme != "http" or split.hostname is None:
            continue
        if _serves_tls(split.hostname, split.port or 80, timeout):
            return redact_url(one)
    return None


def plain_http_error(engine: str, url: str, *, credentials_sent: bool) -> EngineTlsError:
    """The engine at ``url`` (``http://``) speaks TLS on that port."""
    tail = "" if credentials_sent else "; no credentials were sent"
    return EngineTlsError(
        f"{engine} at {redact_url(url)} serves https, but the URL says http://: use an "
        f"https:// URL (and ca_certs){tail}"
    )


def _is_loopback(host: str | None) -> bool:
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


def check_plain_http(engine: str, settings: EngineSettings) -> None:
    """Before a client sends credentials over ``http://``: refuse when the port speaks TLS
    (the engine expects https; the credentials are not sent), warn when the host is not on
    loopback (they would cross the network unencrypted)."""
    if settings.api_key is None and settings.username is None:
        return
    for one in settings.urls:
        split = urlsplit(one)
        if split.scheme != "http":
            continue
        if _serves_tls(split.hostname or "127.0.0.1", split.port or 80, 1.0):
            raise plain_http_error(engine, one, credentials_sent=False)
        if not _is_loopback(split.hostname):
            logger.warning(
                "%s credentials for %s go over plain http, unencrypted: use https",
                engine,
                redact_url(one),
            )
