from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from people.keys import key_hash
from tests.factories import make_agent, user_with_role
from thresholds.models import Agent, AgentKey, ConfigVersion, ThresholdDefinition

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("create_agent", *args, stdout=out)
    return out.getvalue()


def assert_nothing_written() -> None:
    assert not Agent.objects.exists()
    assert not ThresholdDefinition.objects.exists()
    assert not ConfigVersion.objects.exists()
    assert not AgentKey.objects.exists()


def test_create_agent__full_options__agent_thresholds_version_and_key_written() -> None:
    alice = user_with_role("approver", username="alice")

    output = run(
        "fraud",
        "--name",
        "Fraud screen",
        "--actions",
        "allow,review,block",
        "--threshold",
        "review_threshold=0.55@review",
        "--threshold",
        "block_threshold=0.9@block:0.7:0.99",
        "--sample-rate",
        "0.25",
        "--timezone",
        "Europe/Berlin",
        "--approver",
        "alice",
        "--binary",
    )

    agent = Agent.objects.get(agent_id="fraud")
    assert (agent.name, agent.actions, agent.review_sample_rate) == ("Fraud screen", ["allow", "review", "block"], 0.25)
    assert agent.timezone == "Europe/Berlin" and agent.binary_mode
    assert list(agent.approvers.all()) == [alice]
    thresholds = {t.name: (t.action, t.min_value, t.max_value) for t in agent.thresholds.all()}
    assert thresholds == {"review_threshold": ("review", 0.0, 1.0), "block_threshold": ("block", 0.7, 0.99)}
    version = ConfigVersion.objects.get(agent=agent)
    assert (version.number, version.is_live, version.source) == (1, True, "initial")
    assert version.values == {"review_threshold": 0.55, "block_threshold": 0.9}
    key = output.strip().splitlines()[-1]
    assert AgentKey.objects.get(agent=agent).hashed_key == key_hash(key)
    assert "registered agent fraud (allow < review < block)" in output
    schedule = PeriodicTask.objects.get(name="tuner weekly: fraud")
    assert schedule.crontab is not None and str(schedule.crontab.timezone) == "Europe/Berlin"


def test_create_agent__defaults__strongest_action_gated_and_key_reads_live_config() -> None:
    output = run("triage", "--threshold", "escalate_threshold=0.8")

    agent = Agent.objects.get(agent_id="triage")
    assert agent.actions == ["auto-resolve", "flag", "escalate"]
    assert agent.review_sample_rate == 0.10
    assert ThresholdDefinition.objects.get(agent=agent).action == "escalate"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {output.strip().splitlines()[-1]}")
    response = client.get("/api/v1/agents/triage/config")
    assert response.status_code == 200
    assert response.json()["thresholds"] == {"escalate_threshold": 0.8}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["triage"], "give at least one --threshold"),
        (["triage", "--threshold", "flag_threshold"], "expected NAME=VALUE"),
        (["triage", "--threshold", "=0.5"], "expected NAME=VALUE"),
        (["triage", "--threshold", "flag_threshold=high"], "VALUE 'high' is not a number"),
        (["triage", "--threshold", "flag_threshold=nan"], "VALUE must be a finite number"),
        (["triage", "--threshold", "flag_threshold=0.5@"], "the action after @ is empty"),
        (["triage", "--threshold", "flag_threshold=0.5@flag:0.2"], "give both MIN and MAX"),
        (["triage", "--threshold", "flag_threshold=0.5@flag:0.9:0.1"], "MIN 0.9 is above MAX 0.1"),
        (["triage", "--threshold", "flag_threshold=0.5@block"], "gates 'block', which is not one of"),
        (["triage", "--threshold", "flag_threshold=0.5@auto-resolve"], "gates 'auto-resolve'"),
        (["triage", "--threshold", "flag_threshold=1.5"], r"value 1.5 is outside \[0.0, 1.0\]"),
        (["triage", "--threshold", "flag_threshold=0.5@flag:0.6:0.9"], r"value 0.5 is outside \[0.6, 0.9\]"),
        (["triage", "--threshold", "t=0.5", "--threshold", "t=0.6"], "threshold 't' given twice"),
        (["triage", "--actions", "only", "--threshold", "t=0.5"], "actions must be two or more distinct names"),
        (["triage", "--threshold", "t=0.5", "--sample-rate", "1.5"], "--sample-rate 1.5 must be between 0 and 1"),
        (["triage", "--threshold", "t=0.5", "--timezone", "Mars/Olympus"], "not a known IANA time zone"),
        (["triage", "--threshold", "t=0.5", "--approver", "ghost"], "unknown user 'ghost'"),
        (["bad id!", "--threshold", "t=0.5"], "AGENT_ID 'bad id!' may hold only"),
    ],
)
def test_create_agent__bad_input__command_error_and_nothing_written(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)

    assert_nothing_written()


def test_create_agent__approver_who_is_only_a_reviewer__refused_and_nothing_written() -> None:
    user_with_role("reviewer", username="rita")

    with pytest.raises(CommandError, match="'rita' is not an approver"):
        run("triage", "--threshold", "t=0.5", "--approver", "rita")

    assert_nothing_written()


def test_create_agent__existing_agent__refused_and_first_agent_unchanged() -> None:
    make_agent("triage")

    with pytest.raises(CommandError, match="agent 'triage' exists already"):
        run("triage", "--threshold", "other=0.5")

    assert Agent.objects.count() == 1
    assert ConfigVersion.objects.get().values == {"flag_threshold": 0.6, "escalate_threshold": 0.85}
    assert AgentKey.objects.count() == 1


def test_create_agent__rule_based_with_rules__each_threshold_names_its_rule_and_score() -> None:
    run(
        "rules",
        "--actions",
        "allow,review,block",
        "--threshold",
        "amount_rule=0.4@review",
        "--threshold",
        "block_rule=0.9@block",
        "--rule-based",
        "--rule",
        "amount_rule=high_amount:amount_score",
    )
    agent = Agent.objects.get(agent_id="rules")
    assert agent.rule_based
    rules = {t.name: (t.rule, t.score_feature, t.rule_name) for t in agent.thresholds.all()}
    assert rules == {
        "amount_rule": ("high_amount", "amount_score", "high_amount"),
        "block_rule": ("", "", "block_rule"),
    }


def test_create_agent__rule_for_an_unknown_threshold__refused_nothing_written() -> None:
    with pytest.raises(CommandError, match="--rule"):
        run("rules", "--threshold", "amount_rule=0.4", "--rule", "velocity_rule=high_velocity")
    assert_nothing_written()
