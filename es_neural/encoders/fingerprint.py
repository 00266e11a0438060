"""Model fingerprints: what an index records about the encoder that filled it.

A :class:`ModelFingerprint` is stored in the index ``_meta`` when the index is created and compared
with the running encoder (:func:`check_compatible`) before a query vector is sent: a query encoded
by a different model than the documents returns plausible-looking garbage, never an error.

``revision`` identifies the weights. For a local model folder it is a hash of the folder's files
(weights, configs, tokenizer); each file is read once per process and remembered by path, size
and modification time, so asking again is cheap. For a hub id it is the commit of the cached
snapshot (``hub:<sha>``) when known.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, cast, get_args

from es_neural.errors import ConfigurationError, ModelMismatchError

__all__ = [
    "DEFAULT_PRECISION",
    "DEFAULT_RUNTIME",
    "INTERCHANGEABLE_PRECISIONS",
    "UNKNOWN_REVISION",
    "FingerprintKind",
    "ModelFingerprint",
    "check_compatible",
    "folder_revision",
    "hub_revision",
]

FingerprintKind = Literal["dense", "sparse", "rerank"]
_KINDS: frozenset[str] = frozenset(get_args(FingerprintKind))

#: ``revision`` when the weights cannot be identified (a hub id that is not in the local cache).
UNKNOWN_REVISION = "unknown"
_DIGEST_CHARS = 16
#: Precision and runtime of the checkpoint as published (left out of the digest).
DEFAULT_PRECISION = "fp32"
DEFAULT_RUNTIME = "torch"
#: Precisions whose vectors share one space: an index built at any of them may be searched by
#: an encoder at any other, provided the weights (revision) are the same.
INTERCHANGEABLE_PRECISIONS: frozenset[str] = frozenset({"fp32", "int8", "bf16", "fp16"})
#: Files in a model folder that do not change what the model computes.
_SKIPPED_SUFFIXES = (".md", ".lock")
_SKIPPED_NAMES = frozenset({"LICENSE", "LICENSE.txt", "NOTICE"})


@dataclass(frozen=True, slots=True)
class ModelFingerprint:
    """Identity of an encoder's output space.

    ``extra`` holds further ``(key, value)`` string pairs that define the space (for example the
    similarity a dense field was built for); it is kept sorted by key so equal fingerprints are
    equal values with equal :attr:`digest`.

    ``precision`` (``fp32``, ``int8``, ``bf16``, ``fp16``) and ``runtime`` (``torch``,
    ``onnxruntime``) record how the vectors were computed. They enter the :attr:`digest` only when
    they differ from ``fp32`` / ``torch``, so fingerprints written before they existed keep their
    digest. :func:`check_compatible` lets an encoder of one precision search an index built at
    another precision of the same weights (see :data:`INTERCHANGEABLE_PRECISIONS`).
    """

    kind: FingerprintKind
    name: str
    revision: str
    dims: int | None = None
    pooling: str | None = None
    normalize: bool | None = None
    extra: tuple[tuple[str, str], ...] = ()
    precision: str = DEFAULT_PRECISION
    runtime: str = DEFAULT_RUNTIME

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {self.kind!r}")
        if not self.name or not self.revision:
            raise ValueError("a fingerprint needs a non-empty name and revision")
        extra = tuple(sorted((str(k), str(v)) for k, v in self.extra))
        keys = [k for k, _ in extra]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate keys in extra: {keys}")
        object.__setattr__(self, "extra", extra)

    @property
    def digest(self) -> str:
        """Short sha256 of the canonical JSON of every field: equal iff the fingerprints are."""
        canonical = json.dumps(self._fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]

    def _fields(self) -> dict[str, Any]:
        fields_ = {
            "kind": self.kind,
            "name": self.name,
            "revision": self.revision,
            "dims": self.dims,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "extra": dict(self.extra),
        }
        if self.precision != DEFAULT_PRECISION:
            fields_["precision"] = self.precision
        if self.runtime != DEFAULT_RUNTIME:
            fields_["runtime"] = self.runtime
        return fields_

    def to_meta(self) -> dict[str, Any]:
        """A JSON-ready dict for an index ``_meta`` (includes ``digest`` for humans and logs)."""
        return {
            **self._fields(),
            "precision": self.precision,
            "runtime": self.runtime,
            "digest": self.digest,
        }

    def same_space(self) -> ModelFingerprint:
        """This fingerprint at the default precision and runtime: equal for encoders of the same
        weights that differ only in how they compute."""
        return replace(self, precision=DEFAULT_PRECISION, runtime=DEFAULT_RUNTIME)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> ModelFingerprint:
        """The fingerprint stored by :meth:`to_meta`; ``digest`` and unknown keys are ignored.

        Raises :class:`ValueError` when a required field is missing or has the wrong type.
        """
        try:
            kind, name, revision = meta["kind"], meta["name"], meta["revision"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a model fingerprint (missing {exc}): {meta!r}") from None
        dims = meta.get("dims")
        pooling = meta.get("pooling")
        normalize = meta.get("normalize")
        extra = meta.get("extra") or {}
        precision = meta.get("precision") or DEFAULT_PRECISION
        runtime = meta.get("runtime") or DEFAULT_RUNTIME
        if not isinstance(precision, str) or not isinstance(runtime, str):
            raise ValueError(f"precision and runtime must be strings: {meta!r}")
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(revision, str):
            raise ValueError(f"kind, name and revision must be strings: {meta!r}")
        if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int)):
            raise ValueError(f"dims must be an integer or null, got {dims!r}")
        if pooling is not None and not isinstance(pooling, str):
            raise ValueError(f"pooling must be a string or null, got {pooling!r}")
        if normalize is not None and not isinstance(normalize, bool):
            raise ValueError(f"normalize must be a boolean or null, got {normalize!r}")
        if not isinstance(extra, Mapping):
            raise ValueError(f"extra must be an object, got {extra!r}")
        return cls(
            kind=cast(FingerprintKind, kind),
            name=name,
            revision=revision,
            dims=dims,
            pooling=pooling,
            normalize=normalize,
            extra=tuple((str(k), str(v)) for k, v in extra.items()),
            precision=precision,
            runtime=runtime,
        )

    def describe(self) -> str:
        """One line for messages: ``dense 'name' rev abc123 (384 dims, mean, normalized)``."""
        details = [
            f"{self.dims} dims" if self.dims is not None else None,
            self.pooling,
            {True: "normalized", False: "not normalized", None: None}[self.normalize],
            *(f"{k}={v}" for k, v in self.extra),
            self.precision if self.precision != DEFAULT_PRECISION else None,
            self.runtime if self.runtime != DEFAULT_RUNTIME else None,
        ]
        inner = ", ".join(d for d in details if d)
        return f"{self.kind} {self.name!r} rev {self.revision}" + (f" ({inner})" if inner else "")


def check_compatible(expected: Mapping[str, Any], actual: ModelFingerprint) -> None:
    """Raise :class:`ModelMismatchError` unless ``actual`` encodes into the space of ``expected``.

    ``expected`` is the ``_meta`` dict an index was created with. Every field is compared except
    ``name`` when both revisions are known and equal (the same weights under another path or
    label are the same model); with an unknown revision the names must match. ``precision`` and
    ``runtime`` may differ when both precisions are in :data:`INTERCHANGEABLE_PRECISIONS` (the
    same weights computed at another precision: measured in ``bench/encoders.py``).
    """
    try:
        stored = ModelFingerprint.from_meta(expected)
    except ValueError as exc:
        raise ModelMismatchError(f"the index holds no readable model fingerprint: {exc}") from None
    differences: list[str] = []
    for spec in fields(ModelFingerprint):
        field_name = spec.name
        if field_name == "extra":
            continue
        if (
            field_name in ("precision", "runtime")
            and {
                stored.precision,
                actual.precision,
            }
            <= INTERCHANGEABLE_PRECISIONS
        ):
            continue
        if field_name == "name" and stored.revision == actual.revision != UNKNOWN_REVISION:
            continue
        before, now = getattr(stored, field_name), getattr(actual, field_name)
        if before != now:
            differences.append(f"{field_name}: index {before!r}, encoder {now!r}")
    stored_extra, actual_extra = dict(stored.extra), dict(actual.extra)
    for key in sorted(stored_extra.keys() | actual_extra.keys()):
        before_value, now_value = stored_extra.get(key), actual_extra.get(key)
        if before_value != now_value:
            differences.append(f"extra[{key}]: index {before_value!r}, encoder {now_value!r}")
    if differences:
        raise ModelMismatchError(
            f"the {actual.kind} encoder does not match the one the index was built with "
            f"({'; '.join(differences)}). Index: {stored.describe()}. Encoder: "
            f"{actual.describe()}. Configure the model the index was built with, or re-index."
        )


# --------------------------------------------------------------------------- revisions

_file_digests: dict[tuple[str, int, int], str] = {}
_file_digests_lock = threading.Lock()


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _file_digests_lock:
        known = _file_digests.get(key)
    if known is not None:
        return known
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
    digest = sha.hexdigest()
    with _file_digests_lock:
        _file_digests[key] = digest
    return digest


def _model_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for file_name in sorted(files):
            if (
                file_name.startswith(".")
                or file_name.endswith(_SKIPPED_SUFFIXES)
                or file_name in _SKIPPED_NAMES
            ):
                continue
            found.append(Path(root) / file_name)
    return found


def folder_revision(folder: str | os.PathLike[str]) -> str:
    """Hash of a model folder's files (relative paths and bytes); READMEs and dotfiles excluded.

    Raises :class:`ConfigurationError` when ``folder`` is not a directory holding files.
    """
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise ConfigurationError(f"model folder {root} does not exist")
    files = _model_files(root)
    if not files:
        raise ConfigurationError(f"model folder {root} holds no model files")
    sha = hashlib.sha256()
    for path in files:
        sha.update(path.relative_to(root).as_posix().encode("utf-8"))
        sha.update(b"\0")
        sha.update(_file_digest(path.resolve()).encode("ascii"))
        sha.update(b"\n")
    return sha.hexdigest()[: _DIGEST_CHARS * 2]


def hub_revision(repo_id: str) -> str:
    """``hub:<commit>`` of the locally cached snapshot of ``repo_id``; :data:`UNKNOWN_REVISION`
    when it is not cached (nothing is downloaded)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return UNKNOWN_REVISION
    try:
        cached = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # huggingface_hub's HFValidationError: not a valid repo id
        return UNKNOWN_REVISION
    if not isinstance(cached, str):
        return UNKNOWN_REVISION
    parts = Path(cached).parts
    if len(parts) >= 3 and parts[-3] == "snapshots":
        return f"hub:{parts[-2]}"
    return UNKNOWN_REVISION
