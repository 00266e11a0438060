"""Cross-encoder reranking with sentence-transformers' ``CrossEncoder``.

``"embedded"`` resolves to the reranker trained by this project and shipped inside the package
(``es_neural/models/reranker``); when a build lacks it, reranking is off with a warning. Any
other value is a CrossEncoder folder or hub id. A folder may hold ``es_neural.json`` with the
interpolation weight the model was validated with; the searcher uses it when a request gives
none. Float16 weights are loaded as float32 on CPU.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from es_neural.settings import RerankSettings

__all__ = ["RERANKER_META", "CrossEncoderReranker", "embedded_reranker_path", "get_reranker"]

#: File in a reranker folder with how es-neural should use it (``{"interpolation": 0.3}``).
RERANKER_META = "es_neural.json"
_LOG = logging.getLogger(__name__)
_LOCK = threading.Lock()
_LOADED: dict[str, CrossEncoderReranker] = {}


def embedded_reranker_path() -> Path:
    return Path(__file__).resolve().parents[1] / "models" / "reranker"


def _recommended_interpolation(model_name_or_path: str) -> float | None:
    path = Path(model_name_or_path) / RERANKER_META
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("interpolation")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value)
    return None


class CrossEncoderReranker:
    """Scores (query, passage) pairs; cheap to construct, loads on :meth:`load` or first use."""

    def __init__(
        self,
        model_name_or_path: str,
        *,
        max_length: int = 256,
        device: str | None = None,
        name: str | None = None,
    ) -> None:
        self.model_name_or_path = model_name_or_path
        self.max_length = max_length
        self.device = device
        self.name = name or model_name_or_path
        #: The interpolation weight the model was validated with (from ``es_neural.json`` in
        #: its folder, written by ``es-neural train reranker``); ``None`` when it has none.
        self.interpolation: float | None = _recommended_interpolation(model_name_or_path)
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> CrossEncoderReranker:
        with self._lock:
            if self._model is None:
                import torch
                from sentence_transformers import CrossEncoder

                device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
                path = Path(self.model_name_or_path)
                kwargs: dict[str, Any] = {"max_length": self.max_length, "device": device}
                if str(device).startswith("cpu"):
                    # Weights may be stored as float16 (the embedded reranker is); CPUs compute
                    # in float32.
                    kwargs["model_kwargs"] = {"dtype": torch.float32}
                if path.is_dir():
                    kwargs["local_files_only"] = True
                self._model = CrossEncoder(self.model_name_or_path, **kwargs)
        return self

    @property
    def model(self) -> Any:
        return self.load()._model

    def score(self, query: str, passages: Sequence[str], *, batch_size: int = 32) -> list[float]:
        if not passages:
            return []
        pairs = [(query, p) for p in passages]
        scores = self.model.predict(
            pairs, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        return [float(s) for s in scores.reshape(len(passages), -1)[:, -1]]

    def token_lengths(self, query: str, passages: Sequence[str]) -> list[int]:
        tokenizer = self.model.tokenizer
        encoded = tokenizer(
            [query] * len(passages), list(passages), truncation=False, add_special_tokens=True
        )
        return [len(ids) for ids in encoded["input_ids"]]


def get_reranker(settings: RerankSettings) -> CrossEncoderReranker | None:
    """The process-wide reranker for ``settings`` (``None`` when reranking is off)."""
    model = settings.model
    if model == "off":
        return None
    if model == "embedded":
        path = embedded_reranker_path()
        if not (path / "config.json").is_file():
            # Falls back cleanly: search goes on without rerank (RerankInfo says why).
            _LOG.warning(
                "no embedded reranker is shipped in this build: reranking is off; train one "
                "with `es-neural train reranker` or set ES_NEURAL_RERANK__MODEL to a "
                "CrossEncoder path or hub id (e.g. cross-encoder/ms-marco-MiniLM-L6-v2)"
            )
            return None
        model = str(path)
        name = "es-neural embedded reranker"
    else:
        name = model
    key = f"{model}|{settings.max_length}|{settings.device}"
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = CrossEncoderReranker(
                model, max_length=settings.max_length, device=settings.device, name=name
            )
        return _LOADED[key]
