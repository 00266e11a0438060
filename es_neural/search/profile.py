"""Search profiles: a recommended configuration, applied as the defaults of requests.

``es-neural eval --recommend FILE`` writes one (:mod:`es_neural.eval.recommend`), chosen on
validation queries of the user's own data: which legs run, how they are fused (method, per-leg
weights, normalisation, RRF ``k``), and whether the reranker runs (top-N and interpolation) or
is off, with the reason. The file also records the fingerprints of the models it was measured
with, the index it came from, and the validation figures behind each choice.

A profile is loaded with :meth:`Profile.load`, and used by:

* the library: ``NeuralIndex(name, profile="recommended.json")`` (or a :class:`Profile`);
* every process, through the setting ``ES_NEURAL_PROFILE=/path/recommended.json``
  (:attr:`es_neural.settings.Settings.profile`): the API (``es-neural serve``) and
  ``es-neural search``, which also takes ``--profile FILE``.

Precedence, per value: what the request gives, then the profile, then the settings
(``ES_NEURAL_RERANK__TOP_N``, ...), then the built-in defaults. :meth:`Profile.apply` fills the
values a request leaves unset; the searcher then resolves what is still unset against the
settings (:func:`es_neural.search.rerank.resolve_rerank`). The tuned fusion values (leg weights,
normalisation, RRF ``k``) are applied together, and only when the request fuses the same legs
with the same method as the profile: weights tuned for one combination mean nothing for another.

A profile that names other models than those the index was built with is refused
(:meth:`Profile.verify`, a :class:`~es_neural.errors.ModelMismatchError` that names the model),
as is a reranker other than the one its interpolation was tuned with.

The file is JSON with a versioned schema (``format``, ``version``); a file written by a newer
es-neural (a higher ``version``) is refused with a :class:`~es_neural.errors.ConfigurationError`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from es_neural._version import __version__
from es_neural.encoders.fingerprint import (
    ModelFingerprint,
    check_compatible,
    folder_revision,
    hub_revision,
)
from es_neural.errors import ConfigurationError, ModelMismatchError
from es_neural.search.models import MAX_WINDOW, SearchRequest, search_request

if TYPE_CHECKING:
    from es_neural.indices import IndexInfo
    from es_neural.settings import RerankSettings, Settings

__all__ = [
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "FusionDefaults",
    "LegDefaults",
    "Profile",
    "ProfileIndex",
    "ProfileModels",
    "RerankDefaults",
    "SearchDefaults",
    "leave_unset",
    "load_profile",
    "reranker_fingerprint",
]

PROFILE_FORMAT: Final = "es-neural/profile"
#: The schema version this es-neural writes and the highest it reads.
PROFILE_VERSION = 1
LEGS: tuple[Literal["bm25", "dense", "sparse"], ...] = ("bm25", "dense", "sparse")
_FROZEN = ConfigDict(frozen=True, extra="forbid")
_LOG = logging.getLogger(__name__)


class LegDefaults(BaseModel):
    model_config = _FROZEN

    enabled: bool
    #: The leg's fusion weight (tuned with the profile's fusion method and legs).
    weight: float = Field(default=1.0, ge=0.0, le=1000.0, allow_inf_nan=False)


class FusionDefaults(BaseModel):
    model_config = _FROZEN

    method: Literal["rrf", "linear"]
    k: float = Field(default=60.0, gt=0.0, le=10_000.0)
    normalization: Literal["minmax", "zscore", "l2", "none"] = "minmax"


class RerankDefaults(BaseModel):
    model_config = _FROZEN

    enabled: bool
    #: The reranker the profile was measured with (``"embedded"``, a folder or a hub id); a
    #: process whose settings configure no reranker (``off``) loads this one.
    model: str | None = None
    top_n: int | None = Field(default=None, ge=1, le=MAX_WINDOW)
    #: ``a`` in ``a * minmax(rerank) + (1 - a) * minmax(fused)``; 1.0 orders by the rerank
    #: score alone.
    interpolation: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    #: Why rerank is on or off (the validation figures that decided it).
    reason: str = ""


class SearchDefaults(BaseModel):
    model_config = _FROZEN

    legs: dict[Literal["bm25", "dense", "sparse"], LegDefaults]
    fusion: FusionDefaults
    rerank: RerankDefaults

    @field_validator("legs")
    @classmethod
    def _every_leg(cls, value: dict[str, LegDefaults]) -> dict[str, LegDefaults]:
        missing = [leg for leg in LEGS if leg not in value]
        if missing:
            raise ValueError(f"every leg must be listed (missing {missing})")
        if not any(leg.enabled for leg in value.values()):
            raise ValueError("at least one leg must be enabled")
        return value

    @property
    def enabled_legs(self) -> frozenset[str]:
        return frozenset(leg for leg, spec in self.legs.items() if spec.enabled)


class ProfileModels(BaseModel):
    """The models the profile was measured with, as index ``_meta`` records them
    (:meth:`~es_neural.encoders.fingerprint.ModelFingerprint.to_meta`)."""

    model_config = _FROZEN

    dense: dict[str, Any]
    sparse: dict[str, Any] | None = None
    rerank: dict[str, Any] | None = None

    @field_validator("dense", "sparse", "rerank")
    @classmethod
    def _readable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            ModelFingerprint.from_meta(value)  # a ValueError: a validation error
        return value


class ProfileIndex(BaseModel):
    """The index the profile was measured on."""

    model_config = _FROZEN

    name: str
    concrete: str | None = None
    engine: str | None = None


class Profile(BaseModel):
    """A recommended search configuration (see the module docstring)."""

    model_config = _FROZEN

    format: Literal["es-neural/profile"] = PROFILE_FORMAT
    version: int = PROFILE_VERSION
    es_neural_version: str = __version__
    search: SearchDefaults
    models: ProfileModels
    index: ProfileIndex | None = None
    #: One line per decision, with the validation figures behind it.
    reasons: tuple[str, ...] = ()
    #: The validation figures (JSON): what was measured, on which queries.
    evidence: dict[str, Any] = Field(default_factory=dict)
    _origin: str = PrivateAttr(default="the profile")

    def __eq__(self, other: object) -> bool:
        """Equal values (where a profile was read from does not count)."""
        if not isinstance(other, Profile):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # holds dicts

    # ----- file -----

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Profile:
        """The profile in ``path``; an unreadable, invalid or newer file is a
        :class:`~es_neural.errors.ConfigurationError` that says what is wrong."""
        where = Path(path).expanduser()
        try:
            data = json.loads(where.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(
                f"profile {where}: cannot read it ({exc.strerror or exc})"
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"profile {where}: not JSON ({exc})") from None
        return cls.from_dict(data, origin=str(where))

    @classmethod
    def from_dict(cls, data: Any, *, origin: str = "the profile") -> Profile:
        """A profile from its JSON form (what :meth:`to_dict` returns)."""
        label = origin if origin == "the profile" else f"profile {origin}"
        if not isinstance(data, Mapping) or data.get("format") != PROFILE_FORMAT:
            raise ConfigurationError(
                f'{label}: not an es-neural profile (no "format": "{PROFILE_FORMAT}"); '
                "write one with `es-neural eval --recommend FILE`"
            )
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigurationError(f"{label}: 'version' must be a positive integer")
        if version > PROFILE_VERSION:
            raise ConfigurationError(
                f"{label}: written by a newer es-neural (profile version {version}; this one "
                f"reads up to {PROFILE_VERSION}): upgrade es-neural or write the profile again"
            )
        try:
            profile = cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise ConfigurationError(f"{label}: invalid ({problems})") from None
        profile._origin = label
        return profile

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the profile as JSON to ``path`` (folders created); returns the path."""
        out = Path(path).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return out

    # ----- requests -----

    def apply(self, request: SearchRequest) -> SearchRequest:
        """``request`` with every value it leaves unset taken from the profile.

        A value is given when the request sets it (pydantic's ``model_fields_set``; for the
        rerank options, when it is also not ``None``, which means "the default" there). The
        tuned leg weights, normalisation and RRF ``k`` apply only when the request, once
        completed, fuses the profile's legs with the profile's method.
        """
        defaults = self.search
        given = request.model_fields_set

        def set_in(part: str) -> frozenset[str]:
            if part not in given:
                return frozenset()
            return frozenset(getattr(request, part).model_fields_set)

        enabled = {
            leg: getattr(request, leg).enabled
            if "enabled" in set_in(leg)
            else defaults.legs[leg].enabled
            for leg in LEGS
        }
        method = request.fusion.method if "method" in set_in("fusion") else defaults.fusion.method
        tuned = method == defaults.fusion.method and (
            {leg for leg, on in enabled.items() if on} == defaults.enabled_legs
        )
        changes: dict[str, dict[str, Any]] = {}
        for leg in LEGS:
            part = getattr(request, leg)
            values = {name: getattr(part, name) for name in set_in(leg)}
            values.setdefault("enabled", defaults.legs[leg].enabled)
            if tuned:
                values.setdefault("weight", defaults.legs[leg].weight)
            changes[leg] = values
        fusion = {name: getattr(request.fusion, name) for name in set_in("fusion")}
        fusion.setdefault("method", defaults.fusion.method)
        if tuned:
            fusion.setdefault("normalization", defaults.fusion.normalization)
            fusion.setdefault("k", defaults.fusion.k)
        changes["fusion"] = fusion
        rerank = {
            name: getattr(request.rerank, name)
            for name in set_in("rerank")
            if getattr(request.rerank, name) is not None
        }
        rerank.setdefault("enabled", defaults.rerank.enabled)
        if defaults.rerank.enabled:
            for name in ("top_n", "interpolation"):
                if getattr(defaults.rerank, name) is not None:
                    rerank.setdefault(name, getattr(defaults.rerank, name))
        changes["rerank"] = rerank
        return search_request(request, **changes)

    def reranker_settings(self, settings: RerankSettings) -> RerankSettings:
        """``settings`` with the profile's reranker when they configure none (``off``) and the
        profile turns rerank on; otherwise ``settings`` as they are."""
        wanted = self.search.rerank
        if settings.model != "off" or not wanted.enabled or not wanted.model:
            return settings
        return settings.model_copy(update={"model": wanted.model})

    # ----- models -----

    def verify(self, info: IndexInfo, *, reranker: Any | None = None) -> None:
        """Refuse (:class:`~es_neural.errors.ModelMismatchError`) a profile measured with other
        models than those ``info``'s index was built with, or, when it turns rerank on, with
        another reranker than ``reranker``."""
        recorded = {"dense": info.meta.get("dense"), "sparse": info.meta.get("sparse")}
        for kind in ("dense", "sparse"):
            mine = getattr(self.models, kind)
            if mine is None:
                continue
            theirs = recorded[kind]
            if not theirs:
                raise ModelMismatchError(
                    f"{self._origin} was measured with the {kind} model "
                    f"{ModelFingerprint.from_meta(mine).describe()}; index {info.concrete!r} "
                    f"has no {kind} model: use a profile made on this index "
                    "(es-neural eval --recommend) or search without one"
                )
            self._compare(kind, theirs, mine, f"index {info.concrete!r} was built with")
        if self.index is not None and self.index.concrete not in (None, info.concrete):
            _LOG.info(
                "%s was measured on index %r; applied to %r (same models)",
                self._origin,
                self.index.concrete,
                info.concrete,
            )
        actual = reranker_fingerprint(reranker) if self.search.rerank.enabled else None
        if actual is not None and self.models.rerank is not None:
            self._compare(
                "rerank", actual.to_meta(), self.models.rerank, "this search reranks with"
            )

    def _compare(
        self, kind: str, recorded: Mapping[str, Any], mine: Mapping[str, Any], where: str
    ) -> None:
        wanted = ModelFingerprint.from_meta(mine)
        try:
            check_compatible(recorded, wanted)
        except ModelMismatchError:
            try:
                theirs = ModelFingerprint.from_meta(recorded).describe()
            except ValueError:
                theirs = "no readable model fingerprint"
            raise ModelMismatchError(
                f"{self._origin} names another {kind} model than {where}: the profile's is "
                f"{wanted.describe()}, the other {theirs}. Make a profile with these models "
                "(es-neural eval --recommend), or search without one"
            ) from None


def leave_unset(request: SearchRequest, paths: Iterable[str]) -> SearchRequest:
    """``request`` with the fields ``paths`` names (``"fusion.method"``, ``"bm25.enabled"``,
    ``"size"``) unset again: for a front end (the CLI) whose own defaults must not count as
    given, so that a profile fills them."""
    body = request.model_dump(exclude_unset=True)
    for path in paths:
        *parents, name = path.split(".")
        part: Any = body
        for parent in parents:
            part = part.get(parent) if isinstance(part, dict) else None
        if isinstance(part, dict):
            part.pop(name, None)
    return type(request).model_validate(body)


def reranker_fingerprint(reranker: Any | None) -> ModelFingerprint | None:
    """The fingerprint of a cross-encoder by its weights (a folder's files, or the hub commit
    of a cached hub id); ``None`` for a reranker that names no model (a test double)."""
    where = getattr(reranker, "model_name_or_path", None)
    if not isinstance(where, str) or not where:
        return None
    path = Path(where).expanduser()
    revision = folder_revision(path) if path.is_dir() else hub_revision(where)
    return ModelFingerprint(
        kind="rerank", name=str(getattr(reranker, "name", where)), revision=revision
    )


def load_profile(
    profile: Profile | str | os.PathLike[str] | None, settings: Settings | None = None
) -> Profile | None:
    """``profile`` itself, loaded from its path, or (``None``) the settings' profile
    (``ES_NEURAL_PROFILE``); ``None`` when neither names one."""
    if isinstance(profile, Profile):
        return profile
    if profile is not None:
        return Profile.load(profile)
    path = settings.profile if settings is not None else None
    return Profile.load(path) if path is not None else None
