from typing import Any

from django.apps import AppConfig
from django.core.checks import Error, register


class PeopleConfig(AppConfig):
    name = "people"
    verbose_name = "People, roles and tokens"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save

        from people.admin_access import approver_permissions_ensure, approvers_made_staff
        from people.authentication import agent_keys_changed_receiver
        from thresholds.models import Agent, AgentKey

        register(throttle_rates_check)
        post_migrate.connect(approver_permissions_ensure, dispatch_uid="people.approver_permissions")
        m2m_changed.connect(
            approvers_made_staff, sender=get_user_model().groups.through, dispatch_uid="people.approvers_staff"
        )
        # Every process keeps agent keys and their agents; a change to either must reach all of them at once.
        for signal in (post_save, post_delete):
            for model in (Agent, AgentKey):
                signal.connect(agent_keys_changed_receiver, sender=model, dispatch_uid=f"people.keys.{model.__name__}")


def throttle_rates_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every API rate in LOOPSITE_THROTTLE_RATES can be read, so a typo stops the start-up rather than a request."""
    from django.conf import settings

    from people.throttling import rate_parse

    errors = []
    for scope in ("agent", "person", "failed_key"):
        try:
            rate_parse(str(settings.LOOPSITE_THROTTLE_RATES.get(scope, "")))
        except ValueError as exc:
            errors.append(Error(f"LOOPSITE_THROTTLE_RATES[{scope!r}]: {exc}", id="people.E001"))
    return errors
