"""The tuner-run endpoints, ``run_tuner`` and ``setup_periodic_tasks`` as their users see them."""

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from tests.conftest import client_for
from tests.factories import NOW, make_agent
from tests.tuner.helpers import log_rows
from tests.tuner.test_cycle import flag_too_low_rows
from thresholds.models import Agent
from tuner.models import TunerRun
from tuner.selectors import cycle_window

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _offline(settings: Any) -> None:
    settings.ANTHROPIC_API_KEY = ""


def test_tuner_runs_get__approver__cycles_newest_first_with_the_seed_output(agent: Agent, approver: Any) -> None:
    log_rows(agent, flag_too_low_rows(200))
    call_command("run_tuner", agent.agent_id, "--now", "2026-02-23T09:00:00+00:00", stdout=StringIO())
    call_command("run_tuner", agent.agent_id, "--now", NOW.isoformat(), stdout=StringIO())
    response = client_for(approver).get(f"/api/v1/agents/{agent.agent_id}/tuner-runs")
    assert response.status_code == 200
    runs = response.json()["results"]
    assert [r["cycle"] for r in runs] == ["2026-03-02", "2026-02-23"]
    assert runs[0]["status"] == "done" and runs[0]["generator"] == "statistical"
    assert set(runs[0]["output"]) == {"proposals", "summary", "systemHealth"}
    assert runs[0]["agentId"] == agent.agent_id


def test_tuner_runs_get__reviewer_or_agent_key__403(agent: Agent, reviewer: Any, agent_client: Any) -> None:
    assert client_for(reviewer).get(f"/api/v1/agents/{agent.agent_id}/tuner-runs").status_code == 403
    assert agent_client.get(f"/api/v1/agents/{agent.agent_id}/tuner-runs").status_code == 403


def test_tuner_runs_get__unknown_agent__404(approver: Any) -> None:
    response = client_for(approver).get("/api/v1/agents/nobody/tuner-runs")
    assert response.status_code == 404 and response.json()["error"]["field"] == "agentId"


def test_tuner_runs_post__staff__202_with_the_run_id_and_the_task_sent_after_commit(
    agent: Agent, admin_user: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    sent: list[int] = []
    monkeypatch.setattr("tuner.tasks.tuner_cycle_task.delay", lambda pk: sent.append(pk))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin_user).post(f"/api/v1/agents/{agent.agent_id}/tuner-runs")
    assert response.status_code == 202
    run = TunerRun.objects.get(pk=response.json()["id"])
    assert run.status == "pending" and run.requested_by == admin_user and sent == [agent.pk]


def test_tuner_runs_post__cycle_already_done__202_same_run_nothing_sent(
    agent: Agent, admin_user: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    sent: list[int] = []
    monkeypatch.setattr("tuner.tasks.tuner_cycle_task.delay", lambda pk: sent.append(pk))
    from django.utils import timezone

    call_command("run_tuner", agent.agent_id, "--now", timezone.now().isoformat(), stdout=StringIO())
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin_user).post(f"/api/v1/agents/{agent.agent_id}/tuner-runs")
    assert response.status_code == 202 and response.json()["status"] == "done" and sent == []
    assert TunerRun.objects.count() == 1


def test_tuner_runs_post__reviewer__403(agent: Agent, reviewer: Any) -> None:
    assert client_for(reviewer).post(f"/api/v1/agents/{agent.agent_id}/tuner-runs").status_code == 403
    assert not TunerRun.objects.exists()


def test_run_tuner__prints_exactly_the_cycle_output_json(agent: Agent) -> None:
    log_rows(agent, flag_too_low_rows())
    out = StringIO()
    call_command("run_tuner", agent.agent_id, "--now", NOW.isoformat(), stdout=out)
    printed = json.loads(out.getvalue())
    assert printed == TunerRun.objects.get().output
    assert printed["proposals"][0]["proposedValue"] == 0.7


def test_run_tuner__unknown_agent_or_bad_time__command_error(agent: Agent) -> None:
    with pytest.raises(CommandError, match="unknown agent"):
        call_command("run_tuner", "nobody")
    with pytest.raises(CommandError, match="--now"):
        call_command("run_tuner", agent.agent_id, "--now", "2026-03-02T09:00:00")


def test_setup_periodic_tasks__weekly_per_agent_timezone_and_hourly_watchdog__idempotent(db: None) -> None:
    paris, _ = make_agent("paris", timezone="Europe/Paris")
    utc, _ = make_agent("utc")
    call_command("setup_periodic_tasks", stdout=StringIO())
    call_command("setup_periodic_tasks", stdout=StringIO())
    task = PeriodicTask.objects.get(name="tuner weekly: paris")
    assert task.task == "tuner.tasks.tuner_weekly_task" and json.loads(task.args) == [paris.pk]
    assert task.crontab is not None
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "3", "1")
    assert str(task.crontab.timezone) == "Europe/Paris"
    assert str(PeriodicTask.objects.get(name="tuner weekly: utc").crontab.timezone) == "UTC"  # type: ignore[union-attr]
    watchdog = PeriodicTask.objects.get(name="watchdog hourly")
    from approvals.tasks import watchdog_task

    assert watchdog.task == watchdog_task.name and watchdog.interval is not None
    assert (watchdog.interval.every, watchdog.interval.period) == (1, "hours")
    assert PeriodicTask.objects.filter(name__startswith="tuner weekly").count() == 2
    assert utc.pk != paris.pk
    expiry = PeriodicTask.objects.get(name="proposal expiry daily")
    assert expiry.task == "approvals.expire_proposals" and expiry.interval is not None
    assert (expiry.interval.every, expiry.interval.period) == (1, "days")
    digest = PeriodicTask.objects.get(name="approvers digest weekly")
    assert digest.task == "approvals.weekly_digest" and digest.crontab is not None
    assert (digest.crontab.hour, digest.crontab.day_of_week) == ("8", "1")


def test_setup_periodic_tasks__crontab_edited_in_the_admin__kept(db: None) -> None:
    make_agent("paris", timezone="Europe/Paris")
    call_command("setup_periodic_tasks", stdout=StringIO())
    task = PeriodicTask.objects.get(name="tuner weekly: paris")
    from django_celery_beat.models import CrontabSchedule

    task.crontab = CrontabSchedule.objects.create(minute="30", hour="22", day_of_week="0", timezone="Europe/Paris")
    task.save()
    call_command("setup_periodic_tasks", stdout=StringIO())
    task.refresh_from_db()
    assert task.crontab is not None and (task.crontab.hour, task.crontab.day_of_week) == ("22", "0")


def test_admin__runs_and_clusters_browsable(agent: Agent, admin_user: Any) -> None:
    from django.test import Client

    log_rows(agent, flag_too_low_rows())
    call_command("run_tuner", agent.agent_id, "--now", NOW.isoformat(), stdout=StringIO())
    run = TunerRun.objects.get()
    client = Client()
    client.force_login(admin_user)
    listing = client.get("/admin/tuner/tunerrun/")
    assert listing.status_code == 200 and "needs-attention" in listing.content.decode()
    page = client.get(f"/admin/tuner/tunerrun/{run.pk}/change/")
    assert page.status_code == 200 and "Dismissals (false positives)" in page.content.decode()
    assert client.get("/admin/tuner/cluster/").status_code == 200


def _running(agent: Agent, *, heartbeat_ago: timedelta) -> TunerRun:
    """This cycle's run, left ``running`` by a worker whose last heartbeat was ``heartbeat_ago``."""
    wall = timezone.now()
    window = cycle_window(agent=agent, now=wall)
    return TunerRun.objects.create(
        agent=agent,
        cycle=window.cycle,
        status="running",
        started_at=wall - timedelta(minutes=10),
        heartbeat_at=wall - heartbeat_ago,
        window_start=window.start,
        window_end=window.end,
        created_at=wall - timedelta(minutes=10),
    )


def test_tuner_runs_post__run_of_a_worker_that_stopped_heartbeating__sent_again_and_taken_over(
    agent: Agent,
    admin_user: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from tuner.tasks import tuner_cycle_task

    settings.TUNER_HEARTBEAT_SECONDS = 60
    dead = _running(agent, heartbeat_ago=timedelta(minutes=4))
    sent: list[int] = []
    monkeypatch.setattr("tuner.tasks.tuner_cycle_task.delay", lambda pk: sent.append(pk))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin_user).post(f"/api/v1/agents/{agent.agent_id}/tuner-runs")
    assert response.status_code == 202 and response.json()["id"] == dead.pk and sent == [agent.pk]

    assert tuner_cycle_task.apply(args=[agent.pk]).get() == dead.pk  # the worker that gets it
    run = TunerRun.objects.get()
    assert run.status == "done" and run.output is not None
    assert run.started_at is not None and dead.started_at is not None and run.started_at > dead.started_at


def test_tuner_runs_post__run_with_a_fresh_heartbeat__left_to_its_worker_nothing_sent(
    agent: Agent,
    admin_user: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.TUNER_HEARTBEAT_SECONDS = 60
    alive = _running(agent, heartbeat_ago=timedelta(seconds=30))
    sent: list[int] = []
    monkeypatch.setattr("tuner.tasks.tuner_cycle_task.delay", lambda pk: sent.append(pk))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin_user).post(f"/api/v1/agents/{agent.agent_id}/tuner-runs")
    assert response.status_code == 202 and response.json()["status"] == "running" and sent == []
    assert TunerRun.objects.get().started_at == alive.started_at


def test_run_tuner__run_of_a_worker_that_stopped_heartbeating__taken_over_and_printed(
    agent: Agent, settings: Any
) -> None:
    settings.TUNER_HEARTBEAT_SECONDS = 60
    _running(agent, heartbeat_ago=timedelta(minutes=4))
    out = StringIO()
    call_command("run_tuner", agent.agent_id, stdout=out)
    run = TunerRun.objects.get()
    assert run.status == "done" and json.loads(out.getvalue()) == run.output


def test_run_tuner__run_with_a_fresh_heartbeat__command_error_and_left_alone(agent: Agent, settings: Any) -> None:
    settings.TUNER_HEARTBEAT_SECONDS = 60
    alive = _running(agent, heartbeat_ago=timedelta(seconds=30))
    with pytest.raises(CommandError, match="running in another worker"):
        call_command("run_tuner", agent.agent_id, stdout=StringIO())
    assert TunerRun.objects.get().started_at == alive.started_at


@pytest.mark.django_db(transaction=True)  # the email goes when the cycle commits, as in production
def test_run_tuner__console_email__stdout_is_the_json_alone(
    agent: Agent, approver: Any, settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run_tuner ... | jq` used to fail: the approvers' email came first on stdout."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    approver.email = "alice@example.com"
    approver.save()
    log_rows(agent, flag_too_low_rows(200))

    call_command("run_tuner", agent.agent_id, "--now", NOW.isoformat())

    out, err = capsys.readouterr()
    assert json.loads(out)["proposals"]
    assert "Subject: " in err and "Subject: " not in out
