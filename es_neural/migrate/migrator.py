"""The migration run: plan -> create -> copy -> catch up -> verify -> switch.

:class:`Migrator` reads the source and target engines to build a :class:`MigrationPlan` (nothing is
written; ``--dry-run`` stops there), then

1. creates the target index from the plan's body (and, for a concrete source index on the same
   cluster, the alias on the source, so readers can move to the alias at once);
2. copies and encodes every document through sliced points in time (:class:`Copier`), recording
   each finished slice in the state file; an interrupted run resumes from there;
3. catches up with what writers changed meanwhile: with a timestamp field, documents whose
   timestamp is at or after the start (minus a safety margin) are re-read until a pass finds
   nothing new; without one, the verify pass below is the diff pass;
4. verifies every document (counts and checksums of source fields); differences are repaired
   (copied again, or deleted when the source no longer has them) and verified again, up to
   ``max_rounds`` times; if they remain, the run stops with a report and **no switch**;
5. switches the alias atomically (the old index is kept; :func:`rollback` restores it) and, with a
   timestamp field, copies once more what changed in the last moments before the switch.

The window: a write that lands in the source after the last pass read it and before the switch
is copied only by that post-switch pass, which needs the timestamp field. Without one, pause the
writers (or write to both indices) from verify to switch for a strict guarantee; `migrate status`
shows the phase. After the switch, writers must write through es-neural (ingest) into the alias.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from es_neural.dialects.base import BaseDialect, RetryPolicy
from es_neural.encoders.base import DenseEncoder, LeafAssigner, SparseEncoder
from es_neural.errors import (
    ConflictError,
    EsNeuralError,
    IndexNotFoundError,
    InvalidInputError,
    ModelMismatchError,
)
from es_neural.indices import next_version_name, read_index_info, verify_models
from es_neural.ingest.pipeline import models_key
from es_neural.migrate.copy import Copier
from es_neural.migrate.plan import (
    Estimate,
    MigrationPlan,
    Models,
    PlanOptions,
    SourceIndex,
    SwitchMode,
    TargetContext,
    build_plan,
    default_alias,
)
from es_neural.migrate.state import MigrationState, Phase, StateStore
from es_neural.migrate.switch import point_alias, switch
from es_neural.migrate.verify import VerifyReport, verify
from es_neural.settings import Quantization
from es_neural.tree.model import TreeModel
from es_neural.tree.shards import ShardPlacement, place_index

__all__ = [
    "MigrationOptions",
    "MigrationReport",
    "Migrator",
    "VerificationFailed",
]


@dataclass(frozen=True, slots=True)
class MigrationOptions:
    #: The alias readers use (default: the source's alias; required for a concrete source index
    #: on the same cluster).
    alias: str | None = None
    #: The new index's name (default ``<alias>-v<N+1>``).
    target_index: str | None = None
    text_fields: tuple[str, ...] | None = None
    field_prefix: str = ""
    timestamp_field: str | None = None
    catch_up_margin_s: float = 60.0
    #: Parallel readers/writers (``slice.max``); encoding itself is serialised.
    workers: int = 2
    page_size: int = 500
    batch_size: int = 64
    #: Verify passes before giving up (each followed by a repair when it finds differences).
    max_rounds: int = 3
    #: Timestamp catch-up passes at most (each re-reads what changed since the previous one).
    catch_up_passes: int = 3
    shards: int | None = None
    replicas: int | None = None
    quantization: Quantization = Quantization.NONE
    #: How long calls keep retrying an unreachable engine (a restart) before the run fails.
    retry_deadline_s: float = 300.0
    #: Move the alias when verify passes (``False``: copy and verify only).
    switch: bool = True
    #: Place the target's documents on its shards by leaf group (a leaf-routed index,
    #: :mod:`es_neural.tree.shards`; needs a tree). ``False``: the engine's default placement,
    #: also when the source was routed (a migration back to an unrouted index).
    route_leaves: bool = False
    resume: bool = True
    #: Discard an unfinished migration of the same alias (its partial target index is deleted).
    fresh: bool = False
    progress: bool = True
    sample_docs: int = 64


@dataclass(frozen=True, slots=True)
class MigrationReport:
    plan: MigrationPlan
    verify: VerifyReport | None
    switched: bool
    replaced: tuple[str, ...]
    resumed: bool
    rounds: int
    counts: dict[str, float]
    phases: dict[str, float]
    elapsed_s: float
    failures_path: str
    after_switch_copied: int = 0

    @property
    def copy_docs_per_s(self) -> float:
        seconds = self.phases.get("copy", 0.0)
        return self.counts.get("read_copy", 0.0) / seconds if seconds > 0 else 0.0

    def rows(self) -> list[tuple[str, str]]:
        c = self.counts
        rows = [
            ("source", f"{self.plan.source.engine.value}:{self.plan.source.concrete}"),
            ("target", f"{self.plan.target_engine.value}:{self.plan.target_index}"),
            ("alias", str(self.plan.alias)),
            ("resumed", "yes" if self.resumed else "no"),
            ("documents read", f"{c.get('read', 0):,.0f}"),
            ("encoded", f"{c.get('encoded', 0):,.0f}"),
            ("unchanged (not re-encoded)", f"{c.get('unchanged', 0):,.0f}"),
            ("copied without text", f"{c.get('without_text', 0):,.0f}"),
            ("deleted (gone from source)", f"{c.get('deleted', 0):,.0f}"),
            ("failed items", f"{c.get('failed', 0):,.0f}"),
            ("point-in-time restarts", f"{c.get('scan_restarts', 0):,.0f}"),
            ("verify rounds", str(self.rounds)),
        ]
        if self.verify is not None:
            rows.extend(("verify", line) for line in self.verify.lines())
        rows.extend((f"phase {name}", f"{secs:.1f} s") for name, secs in self.phases.items())
        rows.append(("copy throughput", f"{self.copy_docs_per_s:,.1f} docs/s"))
        rows.append(("encoding time", f"{c.get('encode_s', 0):.1f} s"))
        rows.append(("elapsed", f"{self.elapsed_s:.1f} s"))
        if self.switched:
            rows.append(
                ("switch", f"{self.plan.alias} -> {self.plan.target_index} "
                           f"(was {', '.join(self.replaced) or 'nothing'})")
            )  # fmt: skip
            rows.append(("copied after switch", str(self.after_switch_copied)))
        else:
            rows.append(("switch", "not done"))
        if c.get("failed"):
            rows.append(("failures", self.failures_path))
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_dict() | {"body": None},
            "verify": self.verify.to_dict() if self.verify else None,
            "switched": self.switched,
            "replaced": list(self.replaced),
            "resumed": self.resumed,
            "rounds": self.rounds,
            "counts": self.counts,
            "phases": self.phases,
            "elapsed_s": round(self.elapsed_s, 3),
            "copy_docs_per_s": round(self.copy_docs_per_s, 1),
            "after_switch_copied": self.after_switch_copied,
            "failures_path": self.failures_path,
        }


class VerificationFailed(EsNeuralError):
    """Source and target still differ after every repair round: no switch was made."""

    def __init__(self, report: MigrationReport) -> None:
        details = "; ".join(report.verify.lines() if report.verify else ())
        super().__init__(
            f"verification failed after {report.rounds} round(s), alias not switched: {details}"
        )
        self.report = report


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Run:
    state: MigrationState
    store: StateStore
    lock: threading.Lock = field(default_factory=threading.Lock)
    phases: dict[str, float] = field(default_factory=dict)

    def save(self, state: MigrationState) -> None:
        with self.lock:
            self.state = state
            self.store.save(state)


class Migrator:
    """Migrates one source index (or alias) into a new es-neural index behind an alias."""

    def __init__(
        self,
        source: BaseDialect,
        target: BaseDialect | None = None,
        *,
        dense: DenseEncoder,
        sparse: SparseEncoder | None = None,
        leaves: LeafAssigner | None = None,
        options: MigrationOptions = MigrationOptions(),
        state_dir: Path,
        on_phase: Callable[[Phase], None] | None = None,
    ) -> None:
        if options.workers < 1:
            raise InvalidInputError("workers must be at least 1")
        policy = RetryPolicy(deadline_s=options.retry_deadline_s, max_wait_s=10.0)
        self.source = source.with_retry(policy)
        self.target = (target or source).with_retry(policy)
        self.dense = dense
        self.sparse = sparse
        self.leaves = leaves
        self.options = options
        self.store = StateStore(state_dir / "migrations")
        self.state_dir = state_dir
        self.on_phase = on_phase
        self.models_key = models_key(dense, sparse, leaves)
        self._resume: MigrationState | None = None

    @property
    def same_cluster(self) -> bool:
        """Source and target are one cluster: the same engine and a node in common (node lists
        are compared as sets of normalised URLs, so their order and spelling do not matter)."""
        return self.source.engine is self.target.engine and self.source.settings.same_cluster(
            self.target.settings
        )

    # ----- plan -----

    def models(self) -> Models:
        return Models(
            dense=self.dense.fingerprint,
            similarity=self.dense.similarity,
            sparse=self.sparse.fingerprint if self.sparse is not None else None,
            tree_version=self.leaves.tree_version if self.leaves is not None else None,
        )

    def plan(self, source_name: str) -> MigrationPlan:
        """Read the source and target; return the plan (with any problems). Writes nothing."""
        src, tgt, opts = self.source, self.target, self.options
        behind = src.resolve_alias(source_name)
        if len(behind) > 1:
            raise InvalidInputError(
                f"alias {source_name!r} points at several indices {behind}; migrate one at a time"
            )
        if behind:
            concrete, is_alias = behind[0], True
        elif src.index_exists(source_name):
            concrete, is_alias = source_name, False
        else:
            raise IndexNotFoundError(f"no index or alias {source_name!r} on {src.engine.value}")
        source = SourceIndex(
            engine=src.engine,
            name=source_name,
            concrete=concrete,
            is_alias=is_alias,
            mapping=src.get_mapping(concrete),
            settings=src.get_settings(concrete),
            count=src.count(concrete),
        )
        alias = default_alias(
            source_name=source_name,
            source_is_alias=is_alias,
            same_cluster=self.same_cluster,
            requested=opts.alias,
        )
        alias_targets: tuple[str, ...] = ()
        alias_is_index = False
        if alias is not None:
            alias_targets = tuple(tgt.resolve_alias(alias))
            alias_is_index = not alias_targets and tgt.index_exists(alias)
        caps = tgt.probe()
        modules = (
            frozenset([*caps.details.get("modules", ()), *caps.details.get("plugins", ())]) or None
        )
        self._resume = self._resumable(source, alias)
        if self._resume is not None:
            index = self._resume.target_index
        elif opts.target_index:
            index = opts.target_index
        else:
            index = self._next_index(alias or source_name, [*alias_targets, concrete])
        plan = build_plan(
            source,
            TargetContext(
                engine=tgt.engine,
                index=index,
                alias=alias,
                alias_targets=alias_targets,
                alias_is_index=alias_is_index,
                modules=modules,
                same_cluster=self.same_cluster,
            ),
            self.models(),
            PlanOptions(
                text_fields=opts.text_fields,
                field_prefix=opts.field_prefix,
                timestamp_field=opts.timestamp_field,
                catch_up_margin_s=opts.catch_up_margin_s,
                workers=opts.workers,
                shards=opts.shards,
                replicas=opts.replicas,
                quantization=opts.quantization,
            ),
            tgt,
        )
        if self._resume is None and plan.ok and tgt.index_exists(index):
            plan = _with_problem(
                plan,
                f"the target index {index!r} already exists and belongs to no unfinished "
                "migration of this source; choose another with --target-index",
            )
        return plan

    def serving(self, source_name: str) -> str | None:
        """The index the alias (``options.alias``, else ``source_name``) serves on the target
        when a migration of ``source_name`` filled it with these models and tree: migrating
        again would only copy the same vectors. ``None`` otherwise."""
        alias = self.options.alias or source_name
        current = self.target.resolve_alias(alias)
        if len(current) != 1:
            return None
        meta = self.target.get_mapping(current[0]).get("_meta") or {}
        came_from = ((meta.get("migration") or {}).get("source") or {}).get("name")
        models = self.models()
        same_models = (
            meta.get("dense") == models.dense.to_meta()
            and (meta.get("sparse") or None)
            == (models.sparse.to_meta() if models.sparse is not None else None)
            and (meta.get("tree") or {}).get("version") == models.tree_version
        )
        neural = meta.get("created_by") == "es-neural"
        same_models = (
            same_models and (meta.get("placement") is not None) == self.options.route_leaves
        )
        return current[0] if neural and same_models and came_from in (source_name, alias) else None

    def _next_index(self, alias: str, existing: list[str]) -> str:
        candidate = next_version_name(alias, existing)
        while self.target.index_exists(candidate):
            existing.append(candidate)
            candidate = next_version_name(alias, existing)
        return candidate

    def _resumable(self, source: SourceIndex, alias: str | None) -> MigrationState | None:
        if alias is None:
            return None
        prior = self.store.load(self.target.engine.value, alias)
        if prior is None or prior.phase.finished:
            return None
        same = prior.same_migration(
            source_engine=source.engine.value,
            source_url=self.source.settings.cluster_key,
            source_index=source.concrete,
        )
        if not same or not self.target.index_exists(prior.target_index):
            return None
        if self.options.fresh:
            return None
        if not self.options.resume or prior.models_key != self.models_key:
            raise ConflictError(
                f"an unfinished migration of alias {alias!r} into {prior.target_index!r} "
                f"(phase {prior.phase.value}) "
                + ("used other models" if prior.models_key != self.models_key else "exists")
                + "; run it again with the same models to resume, or pass --fresh to discard it "
                f"(deletes the partial index {prior.target_index!r})"
            )
        return prior

    def estimate(self, plan: MigrationPlan) -> Estimate:
        """Encoding speed on a sample of the source (models load first, outside the timing)."""
        hits = self.source.search(
            plan.source.concrete,
            {"size": self.options.sample_docs, "_source": list(plan.text_fields)},
        )["hits"]["hits"]
        from es_neural.text import document_text

        texts = [document_text(h.get("_source") or {}, plan.text_fields) for h in hits]
        texts = [t for t in texts if t] or ["warm-up"]
        self.dense.load()
        if self.sparse is not None:
            self.sparse.load()
        self.dense.encode_documents(texts[:2])
        if self.sparse is not None:
            self.sparse.encode_documents(texts[:2])
        started = time.perf_counter()
        vectors = self.dense.encode_documents(texts)
        if self.sparse is not None:
            self.sparse.encode_documents(texts)
        if self.leaves is not None:
            self.leaves.assign(vectors)
        return Estimate(sample_docs=len(texts), seconds=time.perf_counter() - started)

    # ----- run -----

    def _phase(self, run: _Run, phase: Phase, **changes: Any) -> None:
        run.save(run.state.at(phase, **changes))
        if self.on_phase is not None:
            self.on_phase(phase)

    def run(self, source_name: str) -> MigrationReport:
        """Migrate ``source_name``; :class:`VerificationFailed` (and no switch) on differences."""
        started = time.perf_counter()
        if self.options.fresh:
            self._discard(source_name)
        plan = self.plan(source_name).check()
        alias = plan.alias
        if alias is None:  # build_plan reports a missing alias as a problem
            raise InvalidInputError("the plan has no alias")
        run, resumed = self._start(plan, alias)
        failures = self.store.directory / f"{plan.target_engine.value}--{alias}.failures.jsonl"
        copier = Copier(
            self.source,
            self.target,
            plan,
            dense=self.dense,
            sparse=self.sparse,
            leaves=self.leaves,
            models_key=self.models_key,
            page_size=self.options.page_size,
            batch_size=self.options.batch_size,
            failures_path=failures,
        )
        self._copy(plan, run, copier)
        read_copy = copier.stats.read
        if plan.timestamp_field:
            self._catch_up(plan, run, copier, passes=self.options.catch_up_passes)
        verified, rounds = self._verify_and_repair(plan, run, copier)

        def report(
            switched: bool, replaced: tuple[str, ...] = (), after: int = 0
        ) -> MigrationReport:
            return MigrationReport(
                plan=plan,
                verify=verified,
                switched=switched,
                replaced=replaced,
                resumed=resumed,
                rounds=rounds,
                counts={**copier.stats.snapshot(), "read_copy": read_copy},
                phases=dict(run.phases),
                elapsed_s=time.perf_counter() - started,
                failures_path=str(failures),
                after_switch_copied=after,
            )

        if not verified.ok:
            self._phase(run, Phase.FAILED_VERIFY)
            raise VerificationFailed(report(False))
        if not self.options.switch:
            return report(False)
        t0 = time.perf_counter()
        self._phase(run, Phase.SWITCH)
        if plan.timestamp_field:
            self._catch_up(plan, run, copier, passes=1)  # the last moments before the switch
        switched = switch(self.target, alias, plan.target_index)
        self._phase(run, Phase.SWITCHED)
        run.phases["switch"] = time.perf_counter() - t0
        after = 0
        if plan.timestamp_field:
            before = copier.stats.written
            self._catch_up(plan, run, copier, passes=1)  # writes that raced the switch
            after = int(copier.stats.written - before)
        return report(True, switched.replaced, after)

    def _discard(self, source_name: str) -> None:
        alias = self.options.alias or source_name
        prior = self.store.load(self.target.engine.value, alias)
        if prior is not None and not prior.phase.finished:
            if self.target.resolve_alias(alias) == [prior.target_index]:
                raise ConflictError(
                    f"{prior.target_index!r} is live behind {alias!r}: not discarded"
                )
            self.target.delete_index(prior.target_index)
            self.store.clear(self.target.engine.value, alias)

    def _start(self, plan: MigrationPlan, alias: str) -> tuple[_Run, bool]:
        if self._resume is not None:
            info = read_index_info(self.target, plan.target_index)
            models = self.models()
            try:
                verify_models(
                    info, dense=models.dense, sparse=models.sparse, tree_version=models.tree_version
                )
            except ModelMismatchError as exc:
                raise ConflictError(
                    f"cannot resume into {plan.target_index!r}: {exc}; use --fresh"
                ) from exc
            return _Run(self._resume, self.store), True
        state = MigrationState(
            source_engine=plan.source.engine.value,
            source_url=self.source.settings.cluster_key,
            source_index=plan.source.concrete,
            target_engine=plan.target_engine.value,
            target_index=plan.target_index,
            alias=alias,
            models_key=self.models_key,
            started_at_ms=_now_ms(),
            slices=self.options.workers,
        )
        self.target.create_index(plan.target_index, plan.body)
        if self.options.route_leaves:
            model = getattr(self.leaves, "model", None)
            if not isinstance(model, TreeModel):
                raise InvalidInputError("route_leaves needs a tree (a TreeLeafAssigner)")
            place_index(self.target, plan.target_index, model)
        if plan.mode is SwitchMode.CREATE_ON_SOURCE and not self.source.resolve_alias(alias):
            point_alias(self.source, alias, [plan.source.concrete])
        run = _Run(state, self.store)
        run.save(state)
        return run, False

    def _copy(self, plan: MigrationPlan, run: _Run, copier: Copier) -> None:
        t0 = time.perf_counter()
        self._phase(run, Phase.COPY)
        slices = run.state.slices
        pending = [s for s in range(slices) if s not in run.state.slices_done]
        done_lock = threading.Lock()

        def slice_done(slice_id: int, counts: dict[str, float]) -> None:
            with done_lock:
                ints = {k: int(v) for k, v in counts.items() if not k.endswith("_s")}
                run.save(run.state.slice_done(slice_id, ints))

        bar = tqdm(
            total=plan.source.count,
            initial=min(int(run.state.counts.get("read", 0)), plan.source.count),
            unit="doc",
            desc=f"migrate {plan.source.concrete} -> {plan.target_index}",
            disable=not self.options.progress,
            dynamic_ncols=True,
        )
        copier.on_read = bar.update
        try:
            copier.copy_slices(
                pending, slice_max=slices, workers=self.options.workers, on_slice_done=slice_done
            )
        finally:
            copier.on_read = None
            bar.close()
        self.target.refresh(plan.target_index)
        run.phases["copy"] = time.perf_counter() - t0

    def _catch_up(self, plan: MigrationPlan, run: _Run, copier: Copier, *, passes: int) -> None:
        """Re-read documents whose timestamp is at or after the last pass (minus the margin)."""
        assert plan.timestamp_field is not None
        t0 = time.perf_counter()
        if run.state.phase is not Phase.SWITCHED:
            self._phase(run, Phase.CATCH_UP)
        margin_ms = int(plan.catch_up_margin_s * 1000)
        for _ in range(max(passes, 1)):
            since = (run.state.caught_up_from_ms or run.state.started_at_ms) - margin_ms
            pass_start = _now_ms()
            self.source.refresh(plan.source.concrete)
            before = copier.stats.written
            query = {"range": {plan.timestamp_field: {"gte": since, "format": "epoch_millis"}}}
            slices = run.state.slices
            copier.copy_slices(
                list(range(slices)), slice_max=slices, workers=self.options.workers, query=query
            )
            run.save(run.state.at(run.state.phase, caught_up_from_ms=pass_start))
            if copier.stats.written == before:
                break
        self.target.refresh(plan.target_index)
        run.phases["catch-up"] = run.phases.get("catch-up", 0.0) + time.perf_counter() - t0

    def _verify_and_repair(
        self, plan: MigrationPlan, run: _Run, copier: Copier
    ) -> tuple[VerifyReport, int]:
        t0 = time.perf_counter()
        rounds = 0
        while True:
            rounds += 1
            self._phase(run, Phase.VERIFY)
            report = verify(self.source, self.target, plan)
            if report.ok or rounds >= self.options.max_rounds:
                break
            self._phase(run, Phase.CATCH_UP)
            copier.copy_ids([*report.missing, *report.changed])
            copier.delete_ids(self._gone_from_source(plan, report.extra))
        run.phases["verify"] = time.perf_counter() - t0
        return report, rounds

    def _gone_from_source(self, plan: MigrationPlan, ids: tuple[str, ...]) -> list[str]:
        """Those of ``ids`` the source does not have now (a write may have raced the scan)."""
        gone: list[str] = []
        # a leaf-routed source: its documents' shards do not follow from their ids
        routed = ShardPlacement.from_meta(plan.source.meta) is not None
        routing: dict[str, str | None] | None = {} if routed else None
        for start in range(0, len(ids), 1000):
            chunk = list(ids[start : start + 1000])
            found = self.source.get_documents(
                plan.source.concrete, chunk, fields=[], routing=routing
            )
            gone.extend(i for i in chunk if i not in found)
        return gone


def _with_problem(plan: MigrationPlan, problem: str) -> MigrationPlan:
    return replace(plan, problems=(*plan.problems, problem))
