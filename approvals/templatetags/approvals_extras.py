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


@register.filter
def percent(value: Any) -> str:
    """A rate as a percentage with one decimal: 0.667 as 66.7%; a dash for nothing."""
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value):.1%}"
    except (TypeError, ValueError):
        return str(value)


@register.simple_tag(takes_context=True)
def changes_under_watch(context: Any, agent: Any, limit: int = 8) -> list[dict[str, Any]]:
    """An agent's most recent watched changes with their state, and a link to each for approvers and staff
    (the dashboard's "Changes under watch")."""
    from django.urls import reverse
    from django.utils import timezone

    from approvals.selectors import version_watches
    from people.roles import is_approver, is_staff

    request = context.get("request")
    user = getattr(request, "user", None)
    can_open = user is not None and (is_approver(user) or is_staff(user))
    return [
        {
            "version": row.version,
            "state": row.label,
            "url": reverse("version-watch", args=[agent.agent_id, row.version.number]) if can_open else "",
        }
        for row in version_watches(agent=agent, now=timezone.now(), limit=limit)
    ]
