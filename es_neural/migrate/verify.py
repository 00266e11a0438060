"""Verify before switching: the same documents, with the same source fields, on both sides.

Both indices are read in full (points in time, in parallel) and every document's source fields
are hashed client-side: on the source side its ``_source`` minus the neural fields of an es-neural
source, on the target side its ``_source`` minus es-neural's fields. Vector fields of the user's
own (whose values the engines may return re-quantised or rebuilt from the index) count by
presence only; they are copied as read. The comparison is pure (:func:`compare`): missing, extra
and changed ids.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from es_neural.dialects.base import BaseDialect
from es_neural.migrate.plan import MigrationPlan
from es_neural.migrate.scan import restartable_scan

__all__ = ["VerifyReport", "compare", "digests", "document_digest", "verify"]

#: Ids listed per kind of difference in a report (the counts are always complete).
SHOWN_IDS = 20
PRESENT = "<present>"


def document_digest(source: Mapping[str, Any], *, presence: frozenset[str] = frozenset()) -> str:
    """A checksum of one document's fields: canonical JSON (sorted keys), sha256, 128 bits.
    Fields named in ``presence`` count by presence only, not by value."""
    if presence:
        source = {k: (PRESENT if k in presence else v) for k, v in source.items()}
    canonical = json.dumps(source, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def compare(
    source: Mapping[str, str], target: Mapping[str, str]
) -> tuple[list[str], list[str], list[str]]:
    """``(missing, extra, changed)`` ids between two ``id -> digest`` maps, each sorted."""
    missing = sorted(set(source) - set(target))
    extra = sorted(set(target) - set(source))
    changed = sorted(i for i, d in source.items() if i in target and target[i] != d)
    return missing, extra, changed


def digests(
    dialect: BaseDialect,
    index: str,
    *,
    excludes: Sequence[str] = (),
    presence: frozenset[str] = frozenset(),
    include_vectors: bool = False,
    page_size: int = 1000,
    max_restarts: int = 5,
) -> dict[str, str]:
    """``id -> digest`` of every document of ``index`` (fields in ``excludes`` left out, those in
    ``presence`` compared by presence). A point in time lost to an engine restart is reopened and
    the index read again."""

    def read(hits: Iterator[dict[str, Any]]) -> dict[str, str]:
        return {
            str(hit["_id"]): document_digest(hit.get("_source") or {}, presence=presence)
            for hit in hits
        }

    return restartable_scan(
        dialect,
        index,
        read,
        page_size=page_size,
        source_excludes=excludes,
        include_vectors=include_vectors,
        max_restarts=max_restarts,
    )


@dataclass(frozen=True, slots=True)
class VerifyReport:
    source_count: int
    target_count: int
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    changed: tuple[str, ...]
    elapsed_s: float
    excluded_fields: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return (
            self.source_count == self.target_count
            and not self.missing
            and not self.extra
            and not self.changed
        )

    @property
    def differences(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.changed)

    def lines(self) -> list[str]:
        out = [
            f"documents: source {self.source_count:,}, target {self.target_count:,}",
            f"checksums: {'all equal' if self.ok else f'{self.differences:,} difference(s)'}",
        ]
        for label, ids in (
            ("missing in target", self.missing),
            ("not in source", self.extra),
            ("different fields", self.changed),
        ):
            if ids:
                shown = ", ".join(ids[:SHOWN_IDS]) + (" ..." if len(ids) > SHOWN_IDS else "")
                out.append(f"{label}: {len(ids):,} ({shown})")
        if self.excluded_fields:
            out.append(f"vector fields compared by presence: {list(self.excluded_fields)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source_count": self.source_count,
            "target_count": self.target_count,
            "missing": len(self.missing),
            "extra": len(self.extra),
            "changed": len(self.changed),
            "missing_ids": list(self.missing[:SHOWN_IDS]),
            "extra_ids": list(self.extra[:SHOWN_IDS]),
            "changed_ids": list(self.changed[:SHOWN_IDS]),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def verify(source: BaseDialect, target: BaseDialect, plan: MigrationPlan) -> VerifyReport:
    """Compare the plan's source and target document by document (refreshes both first)."""
    started = time.perf_counter()
    source.refresh(plan.source.concrete)
    target.refresh(plan.target_index)
    excluded = tuple(plan.checksum_excludes)
    # Top-level vector fields count by presence; nested ones are left out by the engine.
    presence = frozenset(f for f in excluded if "." not in f)
    nested = tuple(f for f in excluded if "." in f)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="es-neural-verify") as pool:
        src = pool.submit(
            digests,
            source,
            plan.source.concrete,
            excludes=(*plan.dropped_fields, *nested),
            presence=presence,
            include_vectors=plan.include_vectors,
        )
        tgt = pool.submit(
            digests,
            target,
            plan.target_index,
            excludes=(*plan.fields.neural(), *nested),
            presence=presence,
            include_vectors=plan.include_vectors,
        )
        source_digests, target_digests = src.result(), tgt.result()
    missing, extra, changed = compare(source_digests, target_digests)
    return VerifyReport(
        source_count=len(source_digests),
        target_count=len(target_digests),
        missing=tuple(missing),
        extra=tuple(extra),
        changed=tuple(changed),
        elapsed_s=time.perf_counter() - started,
        excluded_fields=excluded,
    )
