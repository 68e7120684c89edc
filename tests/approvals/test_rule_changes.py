"""Engineers' edits of the rules the tuner is judged by are audit events, with before and after (issue 12, item 2).
Before, an admin edit of an agent's window, objective or miss cost left only Django's admin log."""

from typing import Any

import pytest
from django.test import Client

from approvals.models import AuditEvent
from tests.factories import make_agent, user_with_role
from thresholds.models import Agent, ThresholdDefinition

pytestmark = pytest.mark.django_db


def post_data(response: Any) -> dict[str, Any]:
    """The change form as the admin page shows it: every editable field and inline, with its current value."""
    data: dict[str, Any] = {}

    def add(form: Any) -> None:
        for field in form:
            value = field.value()
            if isinstance(value, bool):
                if value:
                    data[field.html_name] = "on"
            elif value is not None:
                data[field.html_name] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.forms:
            add(form)
    return data


def rule_events(agent: Agent) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(agent=agent, kind="rules.changed").order_by("id"))


def test_admin_agent_edit__window_objective_cost_approvers_and_bounds__one_audit_row_with_before_and_after() -> None:
    agent, _ = make_agent()
    alice = user_with_role("approver", username="alice")
    admin = user_with_role("admin", username="root")
    client = Client()
    client.force_login(admin)
    url = f"/admin/thresholds/agent/{agent.pk}/change/"
    page = client.get(url)
    data = post_data(page)
    flag = next(
        form.prefix
        for inline in page.context["inline_admin_formsets"]
        for form in inline.formset.forms
        if getattr(form.instance, "name", None) == "flag_threshold"
    )
    data.update(window_weeks="6", objective="cost", miss_cost="8.0", approvers=[str(alice.pk)])
    data[f"{flag}-min_value"] = "0.3"

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    (event,) = rule_events(agent)
    assert event.actor == admin and event.detail == {"via": "admin"}
    assert event.before == {
        "windowWeeks": 4,
        "objective": "tolerance",
        "missCost": 5.0,
        "approvers": [],
        "flag_threshold.min": 0.0,
    }
    assert event.after == {
        "windowWeeks": 6,
        "objective": "cost",
        "missCost": 8.0,
        "approvers": ["alice"],
        "flag_threshold.min": 0.3,
    }

    client.post(url, post_data(client.get(url)))  # saved again unchanged: nothing to record
    assert len(rule_events(agent)) == 1


def test_admin_threshold_edit__bounds__audited() -> None:
    agent, _ = make_agent()
    client = Client()
    client.force_login(user_with_role("admin"))
    definition = ThresholdDefinition.objects.get(agent=agent, name="escalate_threshold")
    url = f"/admin/thresholds/thresholddefinition/{definition.pk}/change/"
    data = {**post_data(client.get(url)), "max_value": "0.95"}

    assert client.post(url, data).status_code == 302
    (event,) = rule_events(agent)
    assert (event.before, event.after) == ({"escalate_threshold.max": 1.0}, {"escalate_threshold.max": 0.95})
