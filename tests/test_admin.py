from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from auditlog.models import Decision, DecisionKey
from auditlog.services import decision_log, response_record
from people.models import PersonalToken
from people.services import token_create
from tests.factories import NOW, entry
from thresholds.models import Agent, AgentKey, ConfigVersion, ThresholdDefinition

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def rows(agent: Agent, reviewer: Any) -> dict[str, Any]:
    decision_log(raw=entry(id="entry-1"), now=NOW)
    response_record(
        entry_id="entry-1", raw={"action": "dismiss", "note": "known customer"}, responder_id="rita", now=NOW
    )
    token, _ = token_create(user=reviewer)
    return {
        "agent": agent,
        "thresholddefinition": ThresholdDefinition.objects.filter(agent=agent).first(),
        "configversion": ConfigVersion.objects.get(agent=agent),
        "agentkey": AgentKey.objects.get(agent=agent),
        "personaltoken": token,
        "decision": Decision.objects.get(entry_id="entry-1"),
        "decisionkey": DecisionKey.objects.get(entry_id="entry-1"),
    }


MODELS = [
    ("thresholds", "agent"),
    ("thresholds", "thresholddefinition"),
    ("thresholds", "configversion"),
    ("thresholds", "agentkey"),
    ("people", "personaltoken"),
    ("auditlog", "decision"),
    ("auditlog", "decisionkey"),
]


@pytest.mark.parametrize(("app", "model"), MODELS)
def test_admin_changelist__superuser__lists_the_row(
    admin_client_: Client, rows: dict[str, Any], app: str, model: str
) -> None:
    response = admin_client_.get(f"/admin/{app}/{model}/")

    assert response.status_code == 200
    assert str(rows[model]) in response.content.decode()


@pytest.mark.parametrize(("app", "model"), MODELS)
def test_admin_change_page__superuser__shows_the_row(
    admin_client_: Client, rows: dict[str, Any], app: str, model: str
) -> None:
    response = admin_client_.get(f"/admin/{app}/{model}/{rows[model].pk}/change/")

    assert response.status_code == 200


def test_decision_admin__change_page__every_field_read_only_and_no_save_or_delete(
    admin_client_: Client, rows: dict[str, Any]
) -> None:
    page = admin_client_.get(f"/admin/auditlog/decision/{rows['decision'].pk}/change/").content.decode()

    assert "known customer" in page and "entry-1" in page
    assert 'name="_save"' not in page
    assert "/delete/" not in page
    assert 'name="response_action"' not in page and 'name="confidence"' not in page


def test_decision_admin__add_and_delete__refused(admin_client_: Client, rows: dict[str, Any]) -> None:
    pk = rows["decision"].pk

    assert admin_client_.get("/admin/auditlog/decision/add/").status_code == 403
    assert admin_client_.post(f"/admin/auditlog/decision/{pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client_.post(f"/admin/auditlog/decision/{pk}/change/", {"action": "block"}).status_code == 403
    assert Decision.objects.get(pk=pk).action == "flag"


def test_decision_admin__search_by_entry_id__finds_only_that_entry(admin_client_: Client, rows: dict[str, Any]) -> None:
    decision_log(raw=entry(id="entry-2"), now=NOW)

    page = admin_client_.get("/admin/auditlog/decision/", {"q": "entry-2"}).content.decode()

    assert "entry-2" in page and "entry-1" not in page


def test_decision_admin__filters_and_date_hierarchy__narrow_the_list(
    admin_client_: Client, rows: dict[str, Any]
) -> None:
    decision_log(raw=entry(id="entry-escalated", decision={"action": "escalate", "confidence": 0.9}), now=NOW)
    params = {
        "agent__id__exact": rows["agent"].pk,
        "action": "flag",
        "response_action": "dismiss",
        "queued__exact": "1",
    }

    page = admin_client_.get("/admin/auditlog/decision/", params).content.decode()
    by_action = admin_client_.get("/admin/auditlog/decision/", {"action": "escalate"}).content.decode()

    assert "entry-1" in page and "entry-escalated" not in page
    assert "entry-escalated" in by_action and "entry-1" not in by_action
    assert admin_client_.get("/admin/auditlog/decision/", {"timestamp__year": "2026"}).status_code == 200


def test_config_version_admin__change__refused_values_unchanged(admin_client_: Client, rows: dict[str, Any]) -> None:
    version = rows["configversion"]

    assert admin_client_.get("/admin/thresholds/configversion/add/").status_code == 403
    admin_client_.post(f"/admin/thresholds/configversion/{version.pk}/change/", {"values": '{"flag_threshold": 0.1}'})

    version.refresh_from_db()
    assert version.values == {"flag_threshold": 0.6, "escalate_threshold": 0.85}


def test_agent_admin__change_page__shows_thresholds_and_versions_inline(
    admin_client_: Client, rows: dict[str, Any]
) -> None:
    page = admin_client_.get(f"/admin/thresholds/agent/{rows['agent'].pk}/change/").content.decode()

    assert "flag_threshold" in page and "escalate_threshold" in page
    assert "initial thresholds" in page


@pytest.mark.parametrize(("app", "model"), [("thresholds", "agentkey"), ("people", "personaltoken")])
def test_key_admin__pages__show_prefix_never_the_hash(
    admin_client_: Client, rows: dict[str, Any], app: str, model: str
) -> None:
    row = rows[model]
    listing = admin_client_.get(f"/admin/{app}/{model}/").content.decode()
    detail = admin_client_.get(f"/admin/{app}/{model}/{row.pk}/change/").content.decode()

    assert row.prefix in listing and row.prefix in detail
    assert row.hashed_key not in listing and row.hashed_key not in detail


def test_agent_key_admin__revoke_action__key_revoked_and_refused_by_the_api(
    admin_client_: Client, rows: dict[str, Any], agent_client: Any
) -> None:
    key = rows["agentkey"]

    response = admin_client_.post(
        "/admin/thresholds/agentkey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )

    assert "Revoked 1 key(s)." in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert agent_client.get("/api/v1/agents/triage/config").status_code == 401


def test_personal_token_admin__revoke_action__token_revoked_and_refused_by_the_api(
    admin_client_: Client, reviewer: Any
) -> None:
    token, key = token_create(user=reviewer, name="review-script")

    response = admin_client_.post(
        "/admin/people/personaltoken/", {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )

    assert "Revoked 1 token(s)." in response.content.decode()
    assert PersonalToken.objects.get(pk=token.pk).revoked_at is not None
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get("/api/v1/decisions").status_code == 401
