"""A tiny random BERT for unit tests of model plumbing (not of effectiveness).

:func:`make_tiny_bert_dir` writes one folder (~100 KB) that loads as

* ``AutoModelForMaskedLM`` / ``SpladeEncoder`` (the checkpoint is a ``BertForMaskedLM``),
* ``SentenceTransformer`` / ``SentenceTransformerDense`` (``modules.json``: Transformer + mean
  Pooling, no Normalize module, so normalisation is the encoder's job),
* ``CrossEncoder`` (a fresh classification head on the same backbone).

Weights come from a seeded generator, so the same ``seed`` gives byte-identical weights and a
different ``seed`` different ones. The vocabulary is a small WordPiece list with the special
tokens, words used in tests, and tokens holding ``.`` and ``%`` (to exercise key sanitising).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["TINY_HIDDEN", "TINY_MAX_SEQ_LENGTH", "TINY_VOCAB", "make_tiny_bert_dir"]

TINY_HIDDEN = 32
#: ``max_seq_length`` of the sentence-transformers config (the model has 128 positions).
TINY_MAX_SEQ_LENGTH = 32
_POSITIONS = 128

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_PUNCTUATION = list(".,;:!?'\"()[]{}-_/%&*+=<>#@$")
_WORDS_TEXT = """
the a an of and or to in on at for with from by as is are was were be been being it its this
that these those not no yes can will would should may might must do does did have has had
python java rust go language programming code software computer data model models search index
query queries document documents vector vectors dense sparse neural network networks retrieval
ranking rank score scores engine engines elastic open cluster node nodes shard shards field
fields text texts token tokens word words term terms weight weights learn learning train
training test tests cell cells gene genes protein proteins cancer patients study studies
clinical trial trials effect effects risk disease diseases brain human mouse mice blood heart
water energy light time year years day days people world health care drug drugs dose virus
fox dog cat jumps quick brown lazy over red blue green small large big new old first last
one two three four five six seven eight nine ten hundred thousand million high low
"""
_WORDS = _WORDS_TEXT.split()
_SUBWORDS = ["##s", "##es", "##ed", "##ing", "##ly", "##er", "##est", "##al", "##ion", "##tion"]
_DOTTED = ["e.g.", "i.e.", "u.s.", "etc.", "...", "##.", "%.", "50%"]
_LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
_DIGITS = [str(d) for d in range(10)]
_LETTER_PIECES = ["##" + c for c in _LETTERS + _DIGITS]

#: The vocabulary, in id order (``[PAD]`` is 0).
TINY_VOCAB: tuple[str, ...] = tuple(
    dict.fromkeys(
        _SPECIAL + _PUNCTUATION + _LETTERS + _DIGITS + _WORDS + _SUBWORDS + _DOTTED + _LETTER_PIECES
    )
)


def make_tiny_bert_dir(path: str | Path, *, seed: int = 0, query_prompt: str = "") -> Path:
    """Write the tiny model into ``path`` (created) and return it.

    ``query_prompt`` becomes the sentence-transformers ``query`` prompt, so queries and
    documents encode differently when it is not empty.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")

    tokenizer = BertTokenizer(
        vocab={token: i for i, token in enumerate(TINY_VOCAB)},
        do_lower_case=True,
        model_max_length=_POSITIONS,
    )
    tokenizer.save_pretrained(str(folder))

    config = BertConfig(
        vocab_size=len(TINY_VOCAB),
        hidden_size=TINY_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=_POSITIONS,
        pad_token_id=0,
        initializer_range=0.5,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(config)
        # A random output bias, so that some vocabulary entries are clearly favoured.
        with torch.no_grad():
            model.cls.predictions.bias.normal_(0.0, 1.0)
    model.eval()
    model.save_pretrained(str(folder))

    _write_json(folder / "modules.json", _MODULES)
    _write_json(
        folder / "sentence_bert_config.json",
        {"max_seq_length": TINY_MAX_SEQ_LENGTH, "do_lower_case": False},
    )
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "prompts": {"query": query_prompt, "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": TINY_HIDDEN,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    return folder


_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
]


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
