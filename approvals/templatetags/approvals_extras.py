from typing import Any

from django import template

register = template.Library()


@register.filter
def num(value: Any) -> str:
    """A threshold or rate as people write it: 0.66, not 0.6600; a dash for nothing."""
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def values_text(value: Any) -> str:
    """An audit row's before/after: ``{name: value}`` as ``name=value, ...``; a bare value as it is."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}={num(v)}" for k, v in value.items()) or "—"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return num(value)
    return str(value)
