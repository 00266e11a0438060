"""Training the project's reranker: ``es-neural train reranker``.

:mod:`.data` builds (query, positive, hard negatives) groups from qrels and a fused ranking;
:mod:`.reranker` fine-tunes a sentence-transformers ``CrossEncoder`` (listwise loss, validation
after each epoch, best epoch kept, float16 save); :mod:`.card` writes the model card;
:mod:`.pipeline` mines the negatives through the engine and runs it all. Importing this package
loads neither torch nor a model.
"""

from __future__ import annotations

from es_neural.train.data import Group, QueryExamples, build_examples, sample_groups
from es_neural.train.reranker import (
    EpochReport,
    RerankerTrainConfig,
    TrainResult,
    ValidationSet,
    load_cross_encoder,
    train_reranker,
    validate,
)

__all__ = [
    "EpochReport",
    "Group",
    "QueryExamples",
    "RerankerTrainConfig",
    "TrainResult",
    "ValidationSet",
    "build_examples",
    "load_cross_encoder",
    "sample_groups",
    "train_reranker",
    "validate",
]
