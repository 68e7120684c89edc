import csv
import io
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

from approvals.models import AuditEvent
from approvals.services import config_rollback, proposal_decide
from tests.conftest import client_for
from tests.factories import NOW, make_agent, make_proposal


def _history(agent, approver, approver2):
    """flag_threshold accepted, escalate_threshold rejected, then a manual rollback of the flag change."""
    proposal_decide(
        proposal=make_proposal(agent, proposed=0.66), actor=approver, decision="accept", rationale="a", now=NOW
    )
    proposal_decide(
        proposal=make_proposal(agent, threshold="escalate_threshold", proposed=0.8),
        actor=approver,
        decision="reject",
        rationale="b",
        now=NOW,
    )
    config_rollback(agent=agent, to_version=1, actor=approver2, reason="c", now=NOW)


@pytest.mark.django_db
def test_audit_api__filtered_by_agent_and_threshold__in_order(agent, approver, approver2):
    _history(agent, approver, approver2)

    body = client_for(approver).get(f"/api/v1/audit?agentId={agent.agent_id}&threshold=flag_threshold").json()

    assert [(e["kind"], e["actor"]) for e in body["results"]] == [
        ("proposal.accepted", "alice"),
        ("config.activated", "alice"),
        ("config.rolled_back", "bob"),
    ]
    assert body["results"][0]["before"] == {"flag_threshold": 0.6} and body["results"][0]["after"] == {
        "flag_threshold": 0.66
    }
    assert body["results"][2]["configVersion"] == 3
    everything = client_for(approver).get(f"/api/v1/audit?agentId={agent.agent_id}").json()["results"]
    assert len(everything) == 4


@pytest.mark.django_db
def test_audit_api__csv_export__header_and_rows(agent, approver, approver2):
    _history(agent, approver, approver2)

    response = client_for(approver).get(f"/api/v1/audit?agentId={agent.agent_id}&export=csv")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["kind"] for r in rows] == [
        "proposal.accepted",
        "config.activated",
        "proposal.rejected",
        "config.rolled_back",
    ]
    assert rows[0]["before"] == '{"flag_threshold": 0.6}' and rows[2]["message"] == "b"


@pytest.mark.django_db
def test_audit_api__reviewer__forbidden(reviewer):
    assert client_for(reviewer).get("/api/v1/audit").status_code == 403


@pytest.mark.django_db
def test_audit_page__shows_events_and_exports_csv(client, agent, approver, approver2):
    _history(agent, approver, approver2)
    client.force_login(approver)

    page = client.get(f"/audit/?agent={agent.agent_id}&threshold=escalate_threshold")
    assert page.status_code == 200
    html = page.content.decode()
    assert "proposal.rejected" in html and "proposal.accepted" not in html
    exported = client.get(f"/audit/?agent={agent.agent_id}&export=csv")
    assert exported["Content-Disposition"] == 'attachment; filename="audit-triage.csv"'
    assert exported.content.decode().count("\n") == 5


@pytest.mark.configured
@pytest.mark.django_db
def test_audit_trail__postgresql_refuses_update_and_delete(agent, approver):
    proposal_decide(proposal=make_proposal(agent), actor=approver, decision="reject", rationale="kept", now=NOW)
    event = AuditEvent.objects.get()

    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(message="rewritten")
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()

    assert AuditEvent.objects.get(pk=event.pk).message == "kept"


def _declare_purge(agent: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('loopsite.purge_agent', %s, true)", [str(agent.pk)])


@pytest.mark.configured
@pytest.mark.django_db
def test_audit_trail__postgresql__declared_purge_of_a_real_agent__still_refused(agent, approver):
    proposal_decide(proposal=make_proposal(agent), actor=approver, decision="reject", rationale="kept", now=NOW)

    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        _declare_purge(agent)
        AuditEvent.objects.filter(agent=agent).delete()

    assert AuditEvent.objects.filter(agent=agent).count() == 1


@pytest.mark.configured
@pytest.mark.django_db
def test_audit_trail__postgresql__simulation_agent__deleted_only_when_the_purge_is_declared(approver):
    sim, _ = make_agent("sim-miscalibrated-9")
    proposal_decide(proposal=make_proposal(sim), actor=approver, decision="reject", rationale="kept", now=NOW)

    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        AuditEvent.objects.filter(agent=sim).delete()
    with transaction.atomic():
        _declare_purge(sim)
        AuditEvent.objects.filter(agent=sim).delete()

    assert AuditEvent.objects.filter(agent=sim).count() == 0
