"""The living demo: users for each role, an agent with eight weeks of history, a pending proposal, a queue."""

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from auditlog.models import Decision
from people.roles import is_approver, is_reviewer
from simulation.demo import DEMO_USERS, RULES, TRIAGE, demo_build
from thresholds.models import ConfigVersion
from tuner.models import Proposal

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 5, 15, 0, tzinfo=UTC)  # a Thursday afternoon


def test_demo__fresh_database__users_history_pending_proposal_and_queue() -> None:
    report = demo_build(now=NOW, per_day=40)

    users = get_user_model().objects
    assert {u for u, _, _ in report.users} == {"rita", "alice", "admin"}
    for username, _role, password in DEMO_USERS:
        assert users.get(username=username).check_password(password)
    assert is_reviewer(users.get(username="rita")) and not is_approver(users.get(username="rita"))
    assert is_approver(users.get(username="alice"))
    assert users.get(username="admin").is_superuser

    times = Decision.objects.filter(agent__agent_id=TRIAGE).values_list("timestamp", flat=True)
    assert min(times).date().isoformat() == "2026-01-05"  # the Monday eight weeks before this week's
    assert max(times) <= NOW
    changes = ConfigVersion.objects.filter(agent__agent_id=TRIAGE, source="proposal")
    assert changes.exists()
    assert set(changes.values_list("approved_by__username", flat=True)) == {"alice"}
    assert Proposal.objects.filter(agent__agent_id=RULES, status="pending").exists()
    assert Decision.objects.filter(queued=True, response_action__isnull=True).exists()


def test_demo__run_again__adds_nothing_and_shows_the_demo_passwords() -> None:
    demo_build(now=NOW, per_day=40)
    decisions = Decision.objects.count()
    out = StringIO()
    call_command("demo", stdout=out)
    assert Decision.objects.count() == decisions
    text = out.getvalue()
    assert "rita" in text and "alice" in text and "admin" in text
    assert "password: rita-reviews-2026" in text and "(kept)" in text
    assert "a new one: manage.py create_agent_key demo-triage" in text
