"""The hash chain over each agent's audit rows, and ``verify_audit`` finding an owner's tampering."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from approvals.chain import GENESIS, chain_verify
from approvals.models import AuditEvent
from approvals.services import proposal_decide
from tests.approvals.conftest import audit_history
from tests.audit_owner import append_only_suspended
from tests.factories import NOW, make_agent, make_proposal


def verify(*agent_ids: str) -> tuple[str, str | None]:
    out = StringIO()
    try:
        call_command("verify_audit", *agent_ids, stdout=out)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


@pytest.mark.django_db
def test_chain__each_row_links_to_the_agents_row_before_it(agent, approver, approver2):
    other, _ = make_agent("other")
    events = audit_history(agent, approver, approver2)
    proposal_decide(proposal=make_proposal(other), actor=approver, decision="reject", rationale="x", now=NOW)

    assert events[0].prev_hash == GENESIS
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert AuditEvent.objects.get(agent=other).prev_hash == GENESIS  # a chain per agent
    assert len({e.hash for e in events}) == len(events)


@pytest.mark.django_db
def test_verify_audit__untouched_trail__ok_with_each_agents_head(agent, approver, approver2):
    events = audit_history(agent, approver, approver2)

    out, error = verify()

    assert error is None
    assert f"ok      {agent.agent_id}: {len(events)} events, head {events[-1].hash}" in out


@pytest.mark.django_db
def test_verify_audit__a_row_altered_by_the_owner__reported_at_that_row(agent, approver, approver2):
    events = audit_history(agent, approver, approver2)
    with append_only_suspended(connection), connection.cursor() as cursor:
        cursor.execute("UPDATE approvals_auditevent SET message = 'nothing to see' WHERE id = %s", [events[2].pk])

    out, error = verify(agent.agent_id)

    assert error is not None and f"{agent.agent_id} at event #{events[2].pk}" in error
    assert f"BROKEN  {agent.agent_id}: event #{events[2].pk} (proposal.rejected" in out
    assert "its content does not match its hash" in out


@pytest.mark.django_db
def test_verify_audit__a_row_altered_and_rehashed__the_next_link_breaks(agent, approver, approver2):
    """An owner who also recomputes the altered row's hash cannot fix the link the next row holds."""
    from approvals.chain import fields_of, row_hash

    events = audit_history(agent, approver, approver2)
    forged = events[1]
    forged.message = "approved by nobody"
    new_hash = row_hash(prev_hash=forged.prev_hash, fields=fields_of(forged))
    with append_only_suspended(connection):
        AuditEvent.objects.filter(pk=forged.pk).update(message=forged.message, hash=new_hash)

    report = next(chain_verify([agent.agent_id]))

    assert report.broken is not None and report.broken.event_id == events[2].pk
    assert "does not match the row before it" in report.broken.problem


@pytest.mark.django_db
def test_verify_audit__a_row_deleted_by_the_owner__the_next_row_reports_it(agent, approver, approver2):
    events = audit_history(agent, approver, approver2)
    with append_only_suspended(connection):
        AuditEvent.objects.filter(pk=events[1].pk).delete()

    out, error = verify()

    assert error is not None
    assert f"BROKEN  {agent.agent_id}: event #{events[2].pk}" in out and f"row before it (#{events[0].pk})" in out


@pytest.mark.django_db
def test_verify_audit__json_and_an_unknown_agent(agent, approver, approver2):
    audit_history(agent, approver, approver2)
    out = StringIO()
    call_command("verify_audit", "--json", stdout=out)
    body = json.loads(out.getvalue())
    assert body["ok"] is True and body["agents"][0]["agentId"] == agent.agent_id and body["agents"][0]["events"] == 4

    with pytest.raises(CommandError, match="no agent nobody"):
        call_command("verify_audit", "nobody")
