from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AuditlogConfig(AppConfig):
    name = "auditlog"
    verbose_name = "Decision log"

    def ready(self) -> None:
        from auditlog.services import queue_agents_changed
        from thresholds.models import Agent

        # The queue keeps the agents in process under a stamp: any save or delete of one, by any path, drops it.
        post_save.connect(queue_agents_changed, sender=Agent, dispatch_uid="queue-agents-saved")
        post_delete.connect(queue_agents_changed, sender=Agent, dispatch_uid="queue-agents-deleted")
