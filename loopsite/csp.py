"""django-csp's middleware with the policy built once, not twice for every response.

django-csp builds the Content-Security-Policy header and its report-only twin from the settings on every response,
which was a tenth of the server time of an agent's single ``POST /decisions``. This site uses neither nonces nor
per-view policies (``@csp_update`` and the like) nor a report-only policy, so every response's policy is the one
the settings give: it is built once per process (again when a test changes the settings) and set as django-csp
would set it. A response that does use any of those goes through django-csp's own code, unchanged.
"""

from functools import cache
from typing import Any

from csp.constants import HEADER
from csp.middleware import CheckableLazyObject
from csp.middleware import CSPMiddleware as DjangoCSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponseBase

# What a view or a decorator sets on a response to change its policy (django-csp's decorators).
_PER_RESPONSE = tuple(
    f"_csp_{what}{suffix}" for what in ("config", "update", "replace", "exempt") for suffix in ("", "_ro")
)


@cache
def settings_policy() -> str | None:
    """The policy the settings give, or None when the settings ask for more than one fixed policy (a report-only
    policy or excluded URL prefixes): then django-csp decides each response."""
    policy = getattr(settings, "CONTENT_SECURITY_POLICY", None) or {}
    if getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None) or policy.get("EXCLUDE_URL_PREFIXES"):
        return None
    return build_policy()


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        settings_policy.cache_clear()


setting_changed.connect(_settings_changed)


class CSPMiddleware(DjangoCSPMiddleware):
    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        policy = settings_policy()
        if (
            policy is None
            or settings.DEBUG  # django-csp leaves DEBUG's error pages without a policy
            or getattr(request, "_csp_nonce", None) is not None
            or any(hasattr(response, name) for name in _PER_RESPONSE)
        ):
            return super().process_response(request, response)
        if policy and HEADER not in response:
            response[HEADER] = policy
        # As django-csp does: a nonce asked for after the header is written is an error, not a silent gap.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response
