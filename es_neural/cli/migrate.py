"""``es-neural migrate run|rollback|status``: an existing index into a neural index, no downtime.

Two cases, by what readers use today:

* the source is an alias (``products`` -> ``products-v1``): the new index is ``products-v2`` and the
  alias ``products`` is swapped to it atomically; ``products-v1`` is kept for rollback.
* the source is a concrete index that readers use by name (``products``): an alias cannot share a
  concrete index's name, so choose one with ``--alias shop``. It is created on ``products`` when
  the run starts (move readers to ``shop`` at any time, they still read ``products``), and moved to
  ``shop-v1`` at the switch; ``rollback`` points it back at ``products``.

Across engines (``--from-engine elasticsearch --to-engine opensearch``) the source is only read and
the alias (default: the source's name) is made on the target engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from es_neural.cli.data import (
    GpusPerWorkerOpt,
    RayAddressOpt,
    RayOpt,
    fail,
    settings_or_exit,
)
from es_neural.errors import EsNeuralError
from es_neural.settings import EngineKind, Quantization, Settings

if TYPE_CHECKING:
    from es_neural.encoders.base import DenseEncoder, LeafAssigner, SparseEncoder

__all__ = ["migrate_app"]

migrate_app = typer.Typer(
    help=(
        "Turn an existing index into a neural index without downtime: plan (--dry-run), copy and "
        "encode, catch up, verify, switch the alias atomically; rollback restores the old index."
    ),
    no_args_is_help=True,
)

_out = Console()
_err = Console(stderr=True)

EngineOpt = Annotated[
    EngineKind | None,
    typer.Option("--engine", "-e", help="Engine holding the alias (default: ES_NEURAL_ENGINE)."),
]
AliasOpt = Annotated[str, typer.Option("--alias", "-a", help="The alias readers use.")]


def _split(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    return names or None


def _encoders(
    settings: Settings, *, no_sparse: bool, tree: Path | None
) -> tuple[DenseEncoder, SparseEncoder | None, LeafAssigner | None]:
    from es_neural.encoders.registry import Encoders

    encoders = Encoders.from_settings(settings, sparse=not no_sparse)
    dense, sparse = encoders.dense, encoders.sparse
    leaves = None
    if tree is not None:
        from es_neural.tree.artifact import load_tree
        from es_neural.tree.route import TreeLeafAssigner

        leaves = TreeLeafAssigner(load_tree(tree), encoder=dense.fingerprint)
    return dense, sparse, leaves


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    return table


@migrate_app.command("run")
def run(
    source: Annotated[str, typer.Argument(help="The source index or alias.")],
    alias: Annotated[
        str | None,
        typer.Option(
            "--alias",
            "-a",
            help="Alias readers use (default: the source alias; required for a concrete source "
            "index on the same cluster, since an alias cannot share its name).",
        ),
    ] = None,
    from_engine: Annotated[
        EngineKind | None, typer.Option("--from-engine", help="Engine of the source.")
    ] = None,
    to_engine: Annotated[
        EngineKind | None,
        typer.Option("--to-engine", help="Engine of the target (default: the source's)."),
    ] = None,
    text_fields: Annotated[
        str | None,
        typer.Option(
            "--text-fields",
            help="Comma-separated fields to encode (default: title,text, or the fields an "
            "es-neural source encoded).",
        ),
    ] = None,
    field_prefix: Annotated[
        str,
        typer.Option(
            "--field-prefix", help="Prefix for es-neural's fields when the source uses a name."
        ),
    ] = "",
    timestamp_field: Annotated[
        str | None,
        typer.Option(
            "--timestamp-field",
            help="Date field writers set on every write: catch-up re-reads what changed "
            "(without it, a diff pass over every document's checksum).",
        ),
    ] = None,
    margin: Annotated[
        float, typer.Option("--margin", min=0, help="Catch-up safety margin in seconds.")
    ] = 60.0,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, max=64, help="Parallel sliced readers.")
    ] = 2,
    target_index: Annotated[
        str | None, typer.Option("--target-index", help="Name of the new index.")
    ] = None,
    tree: Annotated[
        Path | None, typer.Option("--tree", help="Tree folder: assign leaves (new tree version).")
    ] = None,
    no_sparse: Annotated[bool, typer.Option("--no-sparse", help="Skip SPLADE.")] = False,
    quantization: Annotated[
        Quantization | None, typer.Option("--quantization", help="Dense vector storage.")
    ] = None,
    shards: Annotated[int | None, typer.Option("--shards", min=1)] = None,
    route_leaves: Annotated[
        bool,
        typer.Option(
            "--route-leaves",
            help="Place documents on shards by leaf group (needs --tree); routed searches then "
            "ask only their leaves' shards. Without it the copy uses the default placement.",
        ),
    ] = False,
    replicas: Annotated[int | None, typer.Option("--replicas", min=0)] = None,
    max_rounds: Annotated[
        int, typer.Option("--max-rounds", min=1, help="Verify passes before giving up.")
    ] = 3,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and estimate only; write nothing.")
    ] = False,
    no_switch: Annotated[
        bool, typer.Option("--no-switch", help="Copy and verify, leave the alias as it is.")
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh", help="Discard an unfinished migration (deletes its partial index)."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Migrate even when the alias already serves a copy of SOURCE made with these "
            "models (and tree).",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    gpus_per_worker: GpusPerWorkerOpt = 0.0,
) -> None:
    """Migrate SOURCE into a new es-neural index and switch the alias to it.

    Idempotent: when the alias already serves a copy of SOURCE that a migration made with the
    configured models (and tree), nothing is done (exit 0; --force migrates again); an
    unfinished run of the same migration is resumed.
    """
    from es_neural.dialects import get_dialect
    from es_neural.migrate import (
        MigrationOptions,
        MigrationPlanError,
        Migrator,
        VerificationFailed,
    )

    settings = settings_or_exit()
    src_kind = from_engine or settings.engine
    dst_kind = to_engine or src_kind
    options = MigrationOptions(
        alias=alias,
        target_index=target_index,
        text_fields=_split(text_fields),
        field_prefix=field_prefix,
        timestamp_field=timestamp_field,
        catch_up_margin_s=margin,
        workers=workers,
        max_rounds=max_rounds,
        shards=shards,
        replicas=replicas,
        route_leaves=route_leaves,
        quantization=quantization or settings.quantization,
        switch=not no_switch,
        fresh=fresh,
        progress=not json_out,
    )
    if not ray and (ray_address or gpus_per_worker):
        raise fail("--ray-address and --gpus-per-worker need --ray")
    src = get_dialect(settings, src_kind)
    dst = get_dialect(settings, dst_kind) if dst_kind is not src_kind else src
    try:
        dense, sparse, leaves = _encoders(settings, no_sparse=no_sparse, tree=tree)
        migrator = Migrator(
            src,
            dst,
            dense=dense,
            sparse=sparse,
            leaves=leaves,
            options=options,
            state_dir=settings.home / "state",
        )
        if ray:  # the copy on Ray: one read task per slice (--workers), encoder actors
            from es_neural.scale import RayMigrator, ScaleOptions, SettingsModels

            migrator = RayMigrator(
                src,
                dst,
                dense=dense,
                sparse=sparse,
                leaves=leaves,
                options=options,
                state_dir=settings.home / "state",
                settings=settings,
                models=SettingsModels(settings, use_sparse=not no_sparse, tree=tree),
                scale=ScaleOptions(
                    address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker
                ),
            )
        if not force and (serving := migrator.serving(source)) is not None:
            if json_out:
                _out.print_json(json.dumps({"nothing_to_do": True, "index": serving}))
            else:
                _out.print(
                    f"nothing to do: {alias or source!r} already serves {serving!r}, a copy of "
                    f"{source!r} made with these models (--force migrates again)",
                    highlight=False,
                )
            return
        if dry_run:
            plan = migrator.plan(source)
            estimate = migrator.estimate(plan) if plan.source.count else None
            if json_out:
                data: dict[str, Any] = plan.to_dict()
                if estimate is not None:
                    data["estimate"] = {
                        "docs_per_s": round(estimate.docs_per_s, 1),
                        "eta_s": estimate.eta_s(plan.source.count),
                    }
                _out.print_json(json.dumps(data))
            else:
                _out.print("\n".join(plan.describe(estimate)), highlight=False, soft_wrap=True)
            if not plan.ok:
                raise typer.Exit(1)
            return
        report = migrator.run(source)
    except MigrationPlanError as exc:
        raise fail(escape(str(exc))) from None
    except VerificationFailed as exc:
        _err.print(_table("migration report", exc.report.rows()))
        raise fail(escape(str(exc))) from None
    except KeyboardInterrupt:
        raise fail("interrupted; run the same command again to resume", code=130) from None
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    finally:
        src.close()
        dst.close()
    if json_out:
        _out.print_json(json.dumps(report.to_dict()))
    else:
        _out.print(_table("migration report", report.rows()))


@migrate_app.command("rollback")
def rollback_cmd(alias: AliasOpt, engine: EngineOpt = None) -> None:
    """Point ALIAS back at the index the last migration replaced (kept since)."""
    from es_neural.dialects import get_dialect
    from es_neural.migrate import rollback

    settings = settings_or_exit()
    dialect = get_dialect(settings, engine)
    try:
        result = rollback(dialect, alias)
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    finally:
        dialect.close()
    _out.print(
        f"alias {result.alias!r} -> {result.index!r} (was {', '.join(result.replaced)}, kept)"
    )


@migrate_app.command("status")
def status_cmd(
    alias: AliasOpt,
    engine: EngineOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Where ALIAS points, what migration switched it in, and any unfinished migration."""
    from es_neural.dialects import get_dialect
    from es_neural.migrate import StateStore, alias_status

    settings = settings_or_exit()
    dialect = get_dialect(settings, engine)
    try:
        data = alias_status(dialect, alias)
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    finally:
        dialect.close()
    state = StateStore(settings.home / "state" / "migrations").load(dialect.engine.value, alias)
    data["state"] = state.to_json() if state is not None else None
    if json_out:
        _out.print_json(json.dumps(data, default=str))
        return
    rows = [("alias", alias), ("engine", data["engine"]), ("indices", ", ".join(data["indices"]))]
    migration = data.get("migration") or {}
    if migration:
        rows.append(("migrated from", json.dumps(migration.get("source"))))
        rows.append(("replaced", ", ".join(migration.get("replaced") or []) or "-"))
        if migration.get("rolled_back_at"):
            rows.append(("rolled back", "yes"))
    if data.get("count") is not None:
        rows.append(("documents", f"{data['count']:,}"))
    if state is not None:
        rows.append(("last run", f"{state.phase.value} -> {state.target_index}"))
        rows.append(("slices done", f"{len(state.slices_done)}/{state.slices}"))
    _out.print(_table(f"migration status of {alias}", rows))
