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
