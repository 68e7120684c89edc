from datetime import timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command

from approvals.services import proposal_decide
from approvals.tasks import digest_task, proposals_expire_task, watchdog_task
from tests.factories import NOW, make_proposal
from thresholds.selectors import config_get_live
from tuner.models import Proposal


@pytest.mark.django_db
def test_rollback_config_command__approver__earlier_values_live(agent, approver, capsys):
    proposal_decide(
        proposal=make_proposal(agent, proposed=0.7), actor=approver, decision="accept", rationale="t", now=NOW
    )

    call_command("rollback_config", "triage", "--to", "1", "--by", "alice", "--reason", "too quiet")

    assert "triage v3 is live (rollback)" in capsys.readouterr().out
    assert config_get_live(agent=agent).thresholds["flag_threshold"] == 0.6


@pytest.mark.django_db
def test_rollback_config_command__reviewer__refused(agent, reviewer):
    with pytest.raises(CommandError, match="not an approver"):
        call_command("rollback_config", "triage", "--to", "1", "--by", "rita", "--reason", "x")


@pytest.mark.django_db
def test_run_watchdog_command__bad_now__refused():
    with pytest.raises(CommandError, match="--now"):
        call_command("run_watchdog", "--now", "2026-03-02T09:00:00")


@pytest.mark.django_db
def test_tasks__expire_watchdog_and_digest__run_their_services(agent, designated, mailoutbox):
    old = make_proposal(agent, now=NOW - timedelta(days=20))
    with time_machine.travel(NOW, tick=False):
        assert proposals_expire_task() == 1
        assert watchdog_task() == []
        assert digest_task() == 1
    assert Proposal.objects.get(pk=old.pk).status == "expired"
    assert "weekly digest" in mailoutbox[0].subject
