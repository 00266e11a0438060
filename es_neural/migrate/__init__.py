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
