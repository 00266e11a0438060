"""The rerank stage, and the cross-encoders it runs (sentence-transformers' ``CrossEncoder``).

One stage serves the searcher (:class:`~es_neural.search.service.HybridSearcher`) and offline
evaluation (:func:`~es_neural.eval.runner.rerank_ranking`):

* :func:`resolve_rerank` settles a request's rerank options against the settings: a value the
  request leaves unset (``None``) takes the settings' value, here and nowhere else;
* :func:`rerank_window` scores the top-N candidates of a window within a time budget and orders
  them by the rerank score, or interpolates it with the first-stage score. When the request gives
  no interpolation weight, the model's own validated weight is the fallback, and the rerank
  score alone after that. It returns the window's final order with a
  :class:`~es_neural.search.models.RerankInfo` saying whether rerank applied, and why not;
* :func:`interpolate` is the formula, a pure function.

``"embedded"`` resolves to the reranker trained by this project and shipped inside the package
(``es_neural/models/reranker``); when a build lacks it, reranking is off with a warning. Any
other value is a CrossEncoder folder or hub id. A folder may hold ``es_neural.json`` with the
interpolation weight the model was validated with; the searcher uses it when a request gives
none. Float16 weights are loaded as float32 on CPU. A local BERT cross-encoder folder (the
embedded reranker is one) is scored on ONNX Runtime without torch
(:mod:`es_neural.search.rerank_onnx`; ``ES_NEURAL_RERANK__RUNTIME``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from es_neural.errors import ConfigurationError
from es_neural.protocols import Reranker
from es_neural.search.fusion import Normalization, normalize
from es_neural.search.models import RerankConfig, RerankInfo, SearchRequest, search_request
from es_neural.search.rerank_onnx import RERANK_RUNTIMES, OnnxCrossEncoder, onnx_refusal
from es_neural.settings import RerankSettings

__all__ = [
    "NO_RERANKER_REASON",
    "RERANKER_META",
    "CrossEncoderReranker",
    "RerankOutcome",
    "RerankPlan",
    "ScoreFunction",
    "WindowEntry",
    "cap_budget",
    "embedded_reranker_path",
    "get_reranker",
    "interpolate",
    "rerank_window",
    "resolve_rerank",
]

#: File in a reranker folder with how es-neural should use it (``{"interpolation": 0.3}``).
RERANKER_META = "es_neural.json"
NO_RERANKER_REASON = (
    "no reranker configured (set ES_NEURAL_RERANK__MODEL to a CrossEncoder path or "
    "hub id, or 'embedded' for the project's trained reranker)"
)
_LOG = logging.getLogger(__name__)
_LOCK = threading.Lock()
_LOADED: dict[str, CrossEncoderReranker] = {}

#: One entry of a window in its final order: (doc id, final score, rerank score or ``None``
#: for the entries the reranker did not score).
WindowEntry = tuple[str, float, float | None]


# ----- options: the request against the settings -----


@dataclass(frozen=True, slots=True)
class RerankPlan:
    """A request's rerank options with every unset value taken from the settings."""

    #: ``False`` when the request disabled rerank.
    enabled: bool
    top_n: int
    budget_ms: float
    batch_size: int
    #: The request's weight; ``None`` falls back to the model's own validated weight, and to
    #: the rerank score alone when the model has none.
    interpolation: float | None


def resolve_rerank(config: RerankConfig, settings: RerankSettings) -> RerankPlan:
    """The one place where a request's unset rerank options take the settings' values."""
    return RerankPlan(
        enabled=config.enabled is not False,
        top_n=settings.top_n if config.top_n is None else config.top_n,
        budget_ms=settings.budget_ms if config.budget_ms is None else config.budget_ms,
        batch_size=settings.batch_size,
        interpolation=config.interpolation,
    )


def cap_budget(request: SearchRequest, limit_ms: float) -> SearchRequest:
    """``request`` with a rerank budget no larger than ``limit_ms`` (unset stays unset).

    A server lets clients lower the budget, never raise it: a rerank cannot be interrupted, so
    a long one would hold a worker thread (and keep other clients out) past its own timeout.
    """
    budget = request.rerank.budget_ms
    if budget is None or budget <= limit_ms:
        return request
    given = {name: getattr(request.rerank, name) for name in request.rerank.model_fields_set}
    rerank = RerankConfig.model_validate({**given, "budget_ms": limit_ms})
    return search_request(request, rerank=rerank)


# ----- the stage -----


@dataclass(frozen=True, slots=True)
class RerankOutcome:
    """The window in its final order, whether rerank applied (and why not), what it cost."""

    entries: tuple[WindowEntry, ...]
    info: RerankInfo
    #: Time spent fetching the candidates' passages.
    fetch_ms: float = 0.0
    #: Time spent scoring them.
    rerank_ms: float = 0.0

    @property
    def applied(self) -> bool:
        return self.info.applied


def interpolate(
    rerank_scores: Sequence[float], first_scores: Sequence[float], weight: float | None
) -> list[float]:
    """The final scores of reranked candidates.

    ``weight`` ``None``: the rerank scores alone. A weight ``a``:
    ``a * minmax(rerank) + (1 - a) * minmax(first stage)``, both over the candidates.
    """
    if weight is None:
        return [float(s) for s in rerank_scores]
    rerank_norm = normalize(rerank_scores, Normalization.MINMAX)
    first_norm = normalize(first_scores, Normalization.MINMAX)
    return [weight * r + (1.0 - weight) * f for r, f in zip(rerank_norm, first_norm, strict=True)]


def rerank_window(
    query: str,
    window: Sequence[tuple[str, float]],
    *,
    reranker: Reranker | None,
    plan: RerankPlan,
    passages: Callable[[Sequence[str]], Sequence[str]],
) -> RerankOutcome:
    """Rerank the top ``plan.top_n`` of ``window`` (doc id, first-stage score; best first).

    ``passages`` gives the text of each candidate id (called once, inside the budget). Falls
    back to the window's own order, with the reason in ``info``, when the plan disables rerank,
    no reranker is configured, the window is empty, or scoring overruns ``plan.budget_ms``
    (checked between batches of ``plan.batch_size``; fetching the passages counts).
    """
    plain = tuple((doc_id, score, None) for doc_id, score in window)
    if not plan.enabled:
        return RerankOutcome(plain, RerankInfo(applied=False, reason="disabled by the request"))
    if reranker is None:
        return RerankOutcome(plain, RerankInfo(applied=False, reason=NO_RERANKER_REASON))
    top_n = min(plan.top_n, len(window))
    if top_n <= 0:
        return RerankOutcome(plain, RerankInfo(applied=False, reason="no candidates"))
    head = window[:top_n]
    candidates = [doc_id for doc_id, _ in head]
    t0 = time.perf_counter()
    texts = list(passages(candidates))
    fetch_ms = (time.perf_counter() - t0) * 1000
    truncated = sum(1 for n in reranker.token_lengths(query, texts) if n > reranker.max_length)
    t1 = time.perf_counter()
    scores = _score_within_budget(reranker, query, texts, plan, started=t0)
    rerank_ms = (time.perf_counter() - t1) * 1000
    if scores is None:
        info = RerankInfo(
            applied=False,
            reason=f"rerank exceeded its {plan.budget_ms:.0f} ms budget: fused order kept",
            model=reranker.name,
            candidates=top_n,
            truncated=truncated,
        )
        return RerankOutcome(plain, info, fetch_ms, rerank_ms)
    weight = plan.interpolation
    if weight is None:  # the model's own validated weight, if it ships one
        weight = getattr(reranker, "interpolation", None)
    final = interpolate(scores, [score for _, score in head], weight)
    order = sorted(range(top_n), key=lambda i: (-final[i], i))
    reranked = tuple((candidates[i], final[i], float(scores[i])) for i in order)
    info = RerankInfo(
        applied=True,
        model=reranker.name,
        candidates=top_n,
        truncated=truncated,
        interpolation=weight,
    )
    return RerankOutcome(reranked + plain[top_n:], info, fetch_ms, rerank_ms)


def _score_within_budget(
    reranker: Reranker, query: str, texts: Sequence[str], plan: RerankPlan, *, started: float
) -> list[float] | None:
    """Scores of ``texts`` batch by batch; ``None`` when the budget ran out before the end."""
    scores: list[float] = []
    step = max(plan.batch_size, 1)
    for start in range(0, len(texts), step):
        scores.extend(reranker.score(query, texts[start : start + step]))
        spent_ms = (time.perf_counter() - started) * 1000
        if spent_ms > plan.budget_ms and start + step < len(texts):
            return None
    return scores


@dataclass(slots=True)
class ScoreFunction:
    """A bare scoring function ``(query, passages) -> scores`` used as a :class:`Reranker`.

    For offline evaluation: no tokenizer (nothing counts as truncated) and no validated
    interpolation weight of its own.
    """

    fn: Callable[[str, list[str]], list[float]]
    name: str = "score function"
    max_length: int = 2**31 - 1
    interpolation: float | None = None

    def score(self, query: str, passages: Sequence[str], *, batch_size: int = 32) -> list[float]:
        return [float(s) for s in self.fn(query, list(passages))]

    def token_lengths(self, query: str, passages: Sequence[str]) -> list[int]:
        return [0] * len(passages)


# ----- cross-encoders -----


def embedded_reranker_path() -> Path:
    return Path(__file__).resolve().parents[1] / "models" / "reranker"


#: Tokens per pair for a model whose ``es_neural.json`` names no ``max_length``.
DEFAULT_MAX_LENGTH = 256


def _meta_value(model_name_or_path: str, key: str) -> Any:
    """``key`` of the folder's ``es_neural.json`` (``None``: no file, unreadable, or absent)."""
    path = Path(model_name_or_path) / RERANKER_META
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def _recommended_interpolation(model_name_or_path: str) -> float | None:
    value = _meta_value(model_name_or_path, "interpolation")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value)
    return None


def _validated_max_length(model_name_or_path: str) -> int:
    value = _meta_value(model_name_or_path, "max_length")
    if isinstance(value, int) and not isinstance(value, bool) and 16 <= value <= 8192:
        return value
    return DEFAULT_MAX_LENGTH


def _nvidia_gpu_visible() -> bool:
    """An NVIDIA driver on this machine (checked without importing torch)."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()


class CrossEncoderReranker:
    """Scores (query, passage) pairs; cheap to construct, loads on :meth:`load` or first use.

    ``runtime``: ``auto`` (default) scores on ONNX Runtime when the model is a local BERT
    cross-encoder folder the torch-free path can run (:mod:`es_neural.search.rerank_onnx`) and
    no GPU ``device`` is named (nor, with ``device`` unset, an NVIDIA GPU visible with torch
    installed), else through sentence-transformers on torch; ``onnx`` requires
    the ONNX path (a model it cannot run is refused with the reason); ``torch`` turns it off.
    ``threads``: ONNX Runtime's intra-op threads (0: one per core)."""

    def __init__(
        self,
        model_name_or_path: str,
        *,
        max_length: int | None = None,
        device: str | None = None,
        name: str | None = None,
        runtime: str = "auto",
        threads: int = 0,
    ) -> None:
        if runtime not in RERANK_RUNTIMES:
            raise ConfigurationError(
                f"rerank runtime must be one of {', '.join(RERANK_RUNTIMES)}, got {runtime!r}"
            )
        self.model_name_or_path = model_name_or_path
        #: ``None`` given: the length the model was validated with (``es_neural.json``), or 256.
        self.max_length = (
            max_length if max_length is not None else _validated_max_length(model_name_or_path)
        )
        self.device = device
        self.name = name or model_name_or_path
        self.runtime_setting = runtime
        self.threads = threads
        #: The interpolation weight the model was validated with (from ``es_neural.json`` in
        #: its folder, written by ``es-neural train reranker``); ``None`` when it has none.
        self.interpolation: float | None = _recommended_interpolation(model_name_or_path)
        self._model: Any = None
        self._onnx: OnnxCrossEncoder | None = None
        self._lock = threading.Lock()

    def _wants_onnx(self) -> bool:
        if self.runtime_setting == "torch":
            return False
        refusal = onnx_refusal(self.model_name_or_path)
        if refusal is None and self.device is not None and not self.device.startswith("cpu"):
            refusal = f"device {self.device!r} is not the CPU"
        elif (
            refusal is None
            and self.device is None
            and self.runtime_setting == "auto"
            and _nvidia_gpu_visible()
            and importlib.util.find_spec("torch") is not None
        ):
            refusal = "an NVIDIA GPU is visible and torch is installed: torch picks it"
        if refusal is not None and self.runtime_setting == "onnx":
            raise ConfigurationError(
                f"ES_NEURAL_RERANK__RUNTIME=onnx: the ONNX path cannot score "
                f"{self.model_name_or_path!r}: {refusal} (use runtime auto or torch)"
            )
        return refusal is None

    def needs_torch(self) -> bool:
        """Whether scoring loads torch (reads config files only; loads nothing). With
        ``runtime="onnx"`` and a model the ONNX path cannot run: ``ConfigurationError``."""
        return self._onnx is None and (self._model is not None or not self._wants_onnx())

    def load(self) -> CrossEncoderReranker:
        with self._lock:
            if self._onnx is None and self._model is None:
                if self._wants_onnx():
                    self._onnx = OnnxCrossEncoder(
                        Path(self.model_name_or_path).expanduser(),
                        max_length=self.max_length,
                        threads=self.threads,
                    )
                else:
                    self._model = self._load_torch()
        return self

    def _load_torch(self) -> Any:
        from es_neural.encoders.base import require_torch_stack

        require_torch_stack("the cross-encoder reranker")  # the lean install has none
        import torch
        from sentence_transformers import CrossEncoder

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = Path(self.model_name_or_path)
        kwargs: dict[str, Any] = {"max_length": self.max_length, "device": device}
        if str(device).startswith("cpu"):
            # Weights may be stored as float16 (the embedded reranker is); CPUs compute in
            # float32.
            kwargs["model_kwargs"] = {"dtype": torch.float32}
        if path.is_dir():
            kwargs["local_files_only"] = True
        return CrossEncoder(self.model_name_or_path, **kwargs)

    @property
    def runtime(self) -> str:
        """What scores pairs once loaded: ``onnxruntime`` or ``torch``."""
        return "onnxruntime" if self.load()._onnx is not None else "torch"

    @property
    def model(self) -> Any:
        """The sentence-transformers ``CrossEncoder`` (loaded with torch even when pairs are
        scored on ONNX Runtime)."""
        self.load()
        with self._lock:
            if self._model is None:
                self._model = self._load_torch()
        return self._model

    def score(self, query: str, passages: Sequence[str], *, batch_size: int = 32) -> list[float]:
        if not passages:
            return []
        onnx = self.load()._onnx
        if onnx is not None:
            return onnx.score(query, passages)
        pairs = [(query, p) for p in passages]
        scores = self.model.predict(
            pairs, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        return [float(s) for s in scores.reshape(len(passages), -1)[:, -1]]

    def token_lengths(self, query: str, passages: Sequence[str]) -> list[int]:
        onnx = self.load()._onnx
        if onnx is not None:
            return onnx.token_lengths(query, passages)
        tokenizer = self.model.tokenizer
        encoded = tokenizer(
            [query] * len(passages),
            list(passages),
            truncation=False,
            add_special_tokens=True,
            verbose=False,  # no "longer than the maximum" warning: predict() truncates
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
    key = f"{model}|{settings.max_length}|{settings.device}|{settings.runtime}|{settings.threads}"
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = CrossEncoderReranker(
                model,
                max_length=settings.max_length,
                device=settings.device,
                name=name,
                runtime=settings.runtime,
                threads=settings.threads,
            )
        return _LOADED[key]
