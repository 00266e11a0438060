"""``es-neural migrate``: turn an existing Elasticsearch/OpenSearch index into a neural index
without downtime and without losing a document.

>>> migrator = Migrator(source_dialect, target_dialect, dense=dense, sparse=sparse,
...                     options=MigrationOptions(alias="products"), state_dir=home / "state")
>>> print("\\n".join(migrator.plan("products").describe()))   # --dry-run: reads only
>>> report = migrator.run("products")                           # copy, catch up, verify, switch
>>> rollback(target_dialect, "products")                        # the alias back to the old index

Modules: :mod:`.plan` (pure: target mapping, problems), :mod:`.copy` (sliced PIT copy + encode),
:mod:`.verify` (checksums), :mod:`.switch` (atomic alias moves, rollback), :mod:`.state`
(resumable state), :mod:`.migrator` (the run).

Readers and the alias: if readers use an alias (``products`` -> ``products-v1``), the new index
is ``products-v2`` and the alias is swapped. If they use a concrete index by name, an alias cannot
take that name: choose one (``--alias shop``); it is put on the source when the run starts (readers
can move to it at any time) and swapped to ``shop-v1`` at the end.

Limitations (by design or not yet done):

* Writes to the source after the last catch-up pass and before the switch are copied only by the
  post-switch pass, which needs a timestamp field; without one, pause writers (or dual-write)
  from verify to switch. After the switch, writers must write through es-neural into the alias
  (plain writes there would lack vectors). With a timestamp field, deletions are found by the
  verify diff (a full read of both indices), not by the timestamp passes; writer clocks must stay
  within the margin (default 60 s) of this machine's clock.
* Refused in the plan: ``_source`` disabled or partial, required custom routing, data streams,
  field types the target engine lacks, analysis components the target lacks (checked statically
  against the core set when the engine reports no ``analysis-common`` module).
* The user's own vector fields are copied as read but compared by presence, not value (the
  engines return them re-quantised or rebuilt from the index); sparse keys holding ``.`` cannot
  become OpenSearch ``rank_features`` keys.
* A point-in-time page that some shards did not answer (a node of a multi-node cluster left
  mid-read) stops that read (``ShardsUnavailableError``): the slice, or verify's read, starts
  again from a new point in time (``point-in-time restarts``), so nothing is skipped quietly.
  Deletions are confirmed by a real-time get on the source anyway.
* Verify keeps an ``id -> digest`` map of both sides in memory (~100 bytes a document).
* Across clusters, rollback acts on the target only (back to what the alias pointed at there).
* Encoding is serialised (one encoder lock, torch using every core); workers overlap reading and
  writing with it, which helps little when the models dominate (see ``bench/migrate.py``).
"""

from __future__ import annotations

from es_neural.migrate.migrator import (
    MigrationOptions,
    MigrationReport,
    Migrator,
    VerificationFailed,
)
from es_neural.migrate.plan import (
    Estimate,
    MigrationPlan,
    MigrationPlanError,
    SwitchMode,
    build_plan,
)
from es_neural.migrate.state import MigrationState, Phase, StateStore
from es_neural.migrate.switch import RollbackError, SwitchResult, alias_status, rollback, switch
from es_neural.migrate.verify import VerifyReport

__all__ = [
    "Estimate",
    "MigrationOptions",
    "MigrationPlan",
    "MigrationPlanError",
    "MigrationReport",
    "MigrationState",
    "Migrator",
    "Phase",
    "RollbackError",
    "StateStore",
    "SwitchMode",
    "SwitchResult",
    "VerificationFailed",
    "VerifyReport",
    "alias_status",
    "build_plan",
    "rollback",
    "switch",
]
