"""A migration whose copy runs on Ray: one read task per point-in-time slice of the source.

:class:`RayMigrator` is :class:`~es_neural.migrate.Migrator` with its copy phase replaced: the
source is read as ``slice.max`` = ``workers`` sliced point-in-time scans (``slice`` on both
engines), one Ray read task each, encoded by the actor pool and written by the one write stage,
as :mod:`es_neural.scale.run` describes. A slice whose every document is written is recorded in
the migration's state file, as the single-process copy does, so a run started again (after the
driver died, say) reads only the other slices. The plan, catch-up, verification, repair and the
alias switch are the single-process migration's, unchanged (they run here, on the driver).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from es_neural.dialects import get_dialect
from es_neural.dialects.base import BaseDialect, RetryPolicy
from es_neural.encoders.base import DenseEncoder, LeafAssigner, SparseEncoder
from es_neural.ingest.pipeline import IngestOptions
from es_neural.migrate.copy import Copier
from es_neural.migrate.migrator import MigrationOptions, Migrator
from es_neural.migrate.plan import MigrationPlan
from es_neural.migrate.state import Phase
from es_neural.scale.blocks import read_slice
from es_neural.scale.cluster import connected
from es_neural.scale.options import ModelSpec, ScaleOptions
from es_neural.scale.run import Tally, drive
from es_neural.scale.workers import CopyRule, WorkerConfig
from es_neural.settings import EngineKind, Settings

if TYPE_CHECKING:
    from es_neural.migrate.migrator import _Run

__all__ = ["RayMigrator"]


def _read_source_slice(
    settings: Settings,
    engine: EngineKind,
    retry_deadline_s: float,
    index: str,
    slice_id: int,
    slice_max: int,
    page_size: int,
    source_excludes: tuple[str, ...],
    include_vectors: bool,
) -> Any:
    """A read task: one slice of the source index, read on a Ray worker."""
    policy = RetryPolicy(deadline_s=retry_deadline_s, max_wait_s=10.0)
    dialect = get_dialect(settings, engine).with_retry(policy)
    try:
        yield from read_slice(
            dialect,
            index,
            slice_id,
            slice_max,
            page_size=page_size,
            source_excludes=source_excludes,
            include_vectors=include_vectors,
        )
    finally:
        dialect.close()


class RayMigrator(Migrator):
    """A :class:`~es_neural.migrate.Migrator` copying on Ray (see the module docstring).

    ``settings`` reach both engines (the workers connect with them); ``models`` is what every
    encoder worker loads (the same models as ``dense`` / ``sparse`` / ``leaves``, which the
    driver uses for the plan, catch-up and repairs)."""

    def __init__(
        self,
        source: BaseDialect,
        target: BaseDialect | None = None,
        *,
        dense: DenseEncoder,
        sparse: SparseEncoder | None = None,
        leaves: LeafAssigner | None = None,
        options: MigrationOptions | None = None,
        state_dir: Path,
        settings: Settings,
        models: ModelSpec,
        scale: ScaleOptions | None = None,
    ) -> None:
        scale = scale or ScaleOptions()
        options = options or MigrationOptions(workers=scale.workers)
        super().__init__(
            source,
            target,
            dense=dense,
            sparse=sparse,
            leaves=leaves,
            options=options,
            state_dir=state_dir,
        )
        self.settings = settings
        self.worker_models = models
        self.scale = scale
        self.tally: Tally | None = None

    def _copy(self, plan: MigrationPlan, run: _Run, copier: Copier) -> None:
        t0 = time.perf_counter()
        self._phase(run, Phase.COPY)
        slices = run.state.slices
        pending = [s for s in range(slices) if s not in run.state.slices_done]
        opts = self.options
        config = WorkerConfig(
            self.settings,
            self.target.engine,
            plan.target_index,
            self.worker_models,
            IngestOptions(
                batch_size=opts.batch_size,
                retry_deadline_s=opts.retry_deadline_s,
                progress=False,
            ),
            copy=CopyRule(tuple(plan.text_fields), tuple(plan.dropped_fields)),
            torch_threads=self.scale.threads,
        )

        def slice_done(slice_id: int, records: int, tally: Tally) -> None:
            run.save(run.state.slice_done(slice_id, {"read": records}))

        bar = tqdm(
            total=plan.source.count,
            initial=min(int(run.state.counts.get("read", 0)), plan.source.count),
            unit="doc",
            desc=f"migrate {plan.source.concrete} -> {plan.target_index} (ray)",
            disable=not opts.progress,
            dynamic_ncols=True,
        )
        try:
            if pending:
                with connected(self.scale) as ray:
                    from es_neural.scale.datasource import UnitRead, UnitsDatasource

                    read = partial(
                        _read_source_slice,
                        self.settings,
                        self.source.engine,
                        opts.retry_deadline_s,
                        plan.source.concrete,
                    )
                    units = [
                        UnitRead(
                            partial(
                                read,
                                s,
                                slices,
                                opts.page_size,
                                tuple(plan.dropped_fields),
                                plan.include_vectors,
                            )
                        )
                        for s in pending
                    ]
                    dataset = ray.data.read_datasource(
                        UnitsDatasource(units, name=f"es-neural:{plan.source.concrete}"),
                        # slices beyond the workers wait their turn: read all at once, they
                        # would all finish near the end and the checkpoint would not move
                        compute=ray.data.TaskPoolStrategy(
                            size=min(len(units), max(2, self.scale.workers))
                        ),
                        num_cpus=0,
                    )
                    self.tally = drive(
                        ray,
                        dataset,
                        config,
                        self.scale,
                        batch_size=opts.batch_size,
                        dead=copier.dead_letters,
                        bar=bar,
                        on_unit_done=slice_done,
                    )
                copier.stats.add(self.tally.counts, read=self.tally.read)
                if self.tally.interrupted:
                    raise KeyboardInterrupt
        finally:
            bar.close()
        self.target.refresh(plan.target_index)
        run.phases["copy"] = time.perf_counter() - t0
