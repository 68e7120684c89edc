"""The meta-rules of the loop (contract rules 1-9), read from settings and never written by the loop itself."""

from types import MappingProxyType
from typing import Any

from django.conf import settings


def rules() -> MappingProxyType[str, Any]:
    """A read-only view of ``settings.LOOPSITE_RULES``: the tuner can read its criteria, not change them."""
    return MappingProxyType(dict(settings.LOOPSITE_RULES))


def rule(name: str) -> Any:
    return settings.LOOPSITE_RULES[name]
