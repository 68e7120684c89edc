from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _append_only_ensure(sender: Any, using: str = "default", **kwargs: Any) -> None:
    from django.db import connections

    from approvals.append_only import append_only_install

    append_only_install(connections[using])


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals and audit trail"

    def ready(self) -> None:
        from approvals import checks  # noqa: F401 - registers the database role check

        post_migrate.connect(_append_only_ensure, sender=self, dispatch_uid="approvals.append_only")
