"""Where a query goes when a streaming replica is configured (``DATABASE_REPLICA_URL``; settings install this
router only then).

- Writes go to the primary (``default``), always.
- Reads go to the replica only inside ``loopsite.replica.lagging_reads()``, and even there not while the primary
  is in a transaction (it may have written what it is about to read). Every other read goes to the primary, also
  for an object that was itself read from the replica, so read-your-writes holds everywhere outside the scope.
- Objects from either may be related to each other: the replica is a copy of the primary.
- Migrations run on the primary only; the replica receives them through replication.
"""

from typing import Any

from django.db import connections

from loopsite.replica import reads_may_lag

PRIMARY = "default"
REPLICA = "replica"


class ReplicaRouter:
    def db_for_read(self, model: type[Any], **hints: Any) -> str:
        if reads_may_lag() and not connections[PRIMARY].in_atomic_block:
            return REPLICA
        return PRIMARY

    def db_for_write(self, model: type[Any], **hints: Any) -> str:
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        if {obj1._state.db, obj2._state.db} <= {PRIMARY, REPLICA}:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        if db == REPLICA:
            return False
        return None
