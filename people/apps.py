from typing import Any

from django.apps import AppConfig
from django.core.checks import Error, register


class PeopleConfig(AppConfig):
    name = "people"
    verbose_name = "People, roles and tokens"

    def ready(self) -> None:
        register(throttle_rates_check)


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
