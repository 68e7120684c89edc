import csv
import io

import pytest
from django.db import DatabaseError, connection, transaction

from approvals.models import AuditEvent
from approvals.services import proposal_decide
from tests.approvals.conftest import audit_history
from tests.conftest import client_for
from tests.factories import NOW, make_agent, make_proposal


@pytest.mark.django_db
def test_audit_api__filtered_by_agent_and_threshold__in_order(agent, approver, approver2):
    audit_history(agent, approver, approver2)

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
    audit_history(agent, approver, approver2)

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
    audit_history(agent, approver, approver2)
    client.force_login(approver)

    page = client.get(f"/audit/?agent={agent.agent_id}&threshold=escalate_threshold")
    assert page.status_code == 200
    html = page.content.decode()
    # the event type filter lists every kind: look at the rows
    assert "<code>proposal.rejected</code>" in html and "<code>proposal.accepted</code>" not in html
    exported = client.get(f"/audit/?agent={agent.agent_id}&export=csv")
    assert exported["Content-Disposition"] == 'attachment; filename="audit-triage.csv"'
    assert exported.content.decode().count("\n") == 5


@pytest.mark.django_db
def test_audit_trail__update_and_delete__refused_by_the_database(agent, approver):
    """On SQLite (the default) as on PostgreSQL: an UPDATE of an audit row used to simply work on SQLite."""
    proposal_decide(proposal=make_proposal(agent), actor=approver, decision="reject", rationale="kept", now=NOW)
    event = AuditEvent.objects.get()

    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(message="rewritten")
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with (
        pytest.raises(DatabaseError, match="append-only: UPDATE refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE approvals_auditevent SET message = 'rewritten'")

    assert AuditEvent.objects.get(pk=event.pk).message == "kept"


@pytest.mark.configured
@pytest.mark.django_db
def test_audit_trail__postgresql__the_old_purge_of_a_demo_agent__refused(approver):
    """The reproduction: `create_agent demo-prod` is allowed, and a declared purge deleted its trail."""
    demo, _ = make_agent("demo-prod")
    proposal_decide(proposal=make_proposal(demo), actor=approver, decision="reject", rationale="kept", now=NOW)

    with (
        pytest.raises(DatabaseError, match="append-only: DELETE refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL loopsite.purge_agent = %s", [str(demo.pk)])
        cursor.execute("DELETE FROM approvals_auditevent WHERE agent_id = %s", [demo.pk])

    assert AuditEvent.objects.filter(agent=demo).count() == 1


@pytest.mark.configured
@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    ["TRUNCATE approvals_auditevent", "TRUNCATE approvals_auditevent CASCADE", "TRUNCATE thresholds_agent CASCADE"],
)
def test_audit_trail__postgresql__truncate__refused(agent, approver, statement):
    proposal_decide(proposal=make_proposal(agent), actor=approver, decision="reject", rationale="kept", now=NOW)

    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's own open transaction has checks pending
    with (
        pytest.raises(DatabaseError, match="append-only: TRUNCATE refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)

    assert AuditEvent.objects.count() == 1


@pytest.mark.configured
@pytest.mark.django_db
def test_audit_trail__postgresql__replica_session_of_a_superuser__still_refused(agent, approver):
    """The tests connect as a superuser: `session_replication_role = replica` used to skip the trigger."""
    proposal_decide(proposal=make_proposal(agent), actor=approver, decision="reject", rationale="kept", now=NOW)

    with (
        pytest.raises(DatabaseError, match="append-only: DELETE refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DELETE FROM approvals_auditevent")

    assert AuditEvent.objects.count() == 1
