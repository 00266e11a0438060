"""The HTTP API (FastAPI): ``create_app`` builds it, ``es-neural serve`` runs it with uvicorn."""

from __future__ import annotations

from es_neural.api.app import ApiSearchRequest, create_app

__all__ = ["ApiSearchRequest", "create_app"]
