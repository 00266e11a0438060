#!/usr/bin/env python
"""Make an existing index neural, idempotently: the common migrations in one command.

Run from the repository root (engines reachable, models available offline)::

    # readers use the alias "products" (-> products-v1): products-v2 gets vectors, alias swapped
    .venv/bin/python scripts/migrate_index.py products

    # readers use the concrete index "products" by name: choose the alias they move to
    .venv/bin/python scripts/migrate_index.py products --alias shop

    # catch up by a timestamp field your writers set (else: a diff pass over every document)
    .venv/bin/python scripts/migrate_index.py products --timestamp-field updated_at

    # re-embed an es-neural index with the models now configured (blue/green)
    ES_NEURAL_DENSE__MODEL=/models/new-dense .venv/bin/python scripts/migrate_index.py products

    # Elasticsearch -> OpenSearch (the alias is made on OpenSearch)
    .venv/bin/python scripts/migrate_index.py products --from-engine elasticsearch \\
        --to-engine opensearch

    # see the plan and the estimated encoding time only
    .venv/bin/python scripts/migrate_index.py products --dry-run

Idempotent: when the alias already points at an index that a migration of this source filled with
the configured models (and tree), nothing is done and the exit status is 0; an unfinished run of
the same migration is resumed; everything else is ``es-neural migrate run`` (same options, same
checks: a plan with problems writes nothing). Undo the switch with
``es-neural migrate rollback --alias NAME``. Exit status: 0 done (or nothing to do), 1 refused or
failed (nothing switched), 130 interrupted (run again to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from es_neural.dialects import BaseDialect, get_dialect
from es_neural.errors import EsNeuralError
from es_neural.migrate import MigrationOptions, Migrator, VerificationFailed
from es_neural.settings import EngineKind, get_settings


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="source index or alias")
    p.add_argument("--alias", help="alias readers use (required for a concrete source index)")
    p.add_argument("--from-engine", choices=[e.value for e in EngineKind])
    p.add_argument("--to-engine", choices=[e.value for e in EngineKind])
    p.add_argument("--text-fields", help="comma-separated fields to encode (default title,text)")
    p.add_argument("--field-prefix", default="", help="prefix for es-neural's field names")
    p.add_argument("--timestamp-field", help="date field set by writers on every write")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-sparse", action="store_true", help="dense vectors only")
    p.add_argument("--dry-run", action="store_true", help="plan and estimate, write nothing")
    p.add_argument("--force", action="store_true", help="migrate even if already done")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p.parse_args(argv)


def already_done(target: BaseDialect, alias: str, source: str, meta_models: dict[str, Any]) -> bool:
    """The alias points at one index filled from ``source`` (or from the index it now names)
    with exactly these models: migrating again would only copy the same vectors."""
    current = target.resolve_alias(alias)
    if len(current) != 1:
        return False
    meta = target.get_mapping(current[0]).get("_meta") or {}
    migration = meta.get("migration") or {}
    came_from = (migration.get("source") or {}).get("name")
    same_models = all(meta.get(key) == value for key, value in meta_models.items())
    return meta.get("created_by") == "es-neural" and same_models and came_from in (source, alias)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    settings = get_settings()
    src_kind = EngineKind(args.from_engine) if args.from_engine else settings.engine
    dst_kind = EngineKind(args.to_engine) if args.to_engine else src_kind
    src = get_dialect(settings, src_kind)
    dst = get_dialect(settings, dst_kind) if dst_kind is not src_kind else src
    from es_neural.encoders.registry import get_dense_encoder, get_sparse_encoder

    dense = get_dense_encoder(settings.dense)
    sparse = None if args.no_sparse else get_sparse_encoder(settings.sparse)
    fields = tuple(f.strip() for f in (args.text_fields or "").split(",") if f.strip()) or None
    migrator = Migrator(
        src,
        dst,
        dense=dense,
        sparse=sparse,
        options=MigrationOptions(
            alias=args.alias,
            text_fields=fields,
            field_prefix=args.field_prefix,
            timestamp_field=args.timestamp_field,
            workers=args.workers,
            progress=not args.json,
        ),
        state_dir=settings.home / "state",
    )
    try:
        alias = args.alias or args.source
        models = {
            "dense": dense.fingerprint.to_meta(),
            "sparse": sparse.fingerprint.to_meta() if sparse is not None else None,
        }
        if not args.force and already_done(dst, alias, args.source, models):
            print(f"nothing to do: {alias!r} already serves a neural copy made by these models")
            return 0
        plan = migrator.plan(args.source)
        if args.dry_run or not plan.ok:
            estimate = migrator.estimate(plan) if plan.ok and plan.source.count else None
            print("\n".join(plan.describe(estimate)))
            return 0 if plan.ok else 1
        report = migrator.run(args.source)
    except VerificationFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except EsNeuralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        src.close()
        dst.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        for key, value in report.rows():
            print(f"{key:>28}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
