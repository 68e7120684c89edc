"""A whole cycle through ``tuner_cycle_run`` on small synthetic windows: what is stored and what is said."""

import random
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from approvals.models import AuditEvent
from auditlog.models import Decision
from tests.factories import NOW, make_agent, make_proposal
from tests.tuner.helpers import log_rows, output, spread
from thresholds.models import Agent
from tuner.generators import Generated, GenerationContext, StatisticalGenerator
from tuner.models import Cluster, Proposal, ProposalEvidence, RejectionMemory, TunerRun
from tuner.services import tuner_cycle_run

pytestmark = pytest.mark.django_db
SEED_KEYS = {
    "thresholdName",
    "currentValue",
    "proposedValue",
    "direction",
    "confidence",
    "expectedImpact",
    "evidenceCount",
    "sampleEntryIds",
    "riskAssessment",
}


def flag_too_low_rows(n: int = 400, *, weeks: int = 4, seed: int = 1, now: datetime = NOW) -> list[dict[str, Any]]:
    """flag_threshold is 0.6 but reviewers dismiss every flag under 0.7 (those fire at night)."""
    rnd = random.Random(seed)
    rows = []
    for at in spread(n, weeks=weeks, now=now):
        c = round(rnd.uniform(0.4, 0.95), 4)
        false_alarm = 0.6 <= c < 0.7
        rows.append(
            {
                "confidence": c,
                "at": at,
                "response": "dismiss" if false_alarm else "approve",
                "features": {"night": 1.0 if false_alarm else 0.0, "amount": round(rnd.uniform(10, 500), 2)},
            }
        )
    return rows


def stat_run(agent: Agent, **kw: Any) -> TunerRun:
    return tuner_cycle_run(agent=agent, now=kw.pop("now", NOW), generator=StatisticalGenerator(), **kw)


def test_cycle__flag_threshold_too_low__increase_stored_with_evidence_audit_and_seed_output() -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    run = stat_run(agent)

    assert run.status == "done" and run.generator == "statistical"
    assert set(output(run)) == {"proposals", "summary", "systemHealth"}
    (out,) = output(run)["proposals"]
    assert set(out) == SEED_KEYS
    assert out["thresholdName"] == "flag_threshold" and out["direction"] == "increase"
    assert (out["currentValue"], out["proposedValue"], out["confidence"]) == (0.6, 0.7, "high")
    assert output(run)["systemHealth"] == "needs-attention"

    proposal = Proposal.objects.get(run=run)
    assert proposal.status == "pending" and proposal.evidence_count == out["evidenceCount"] >= 5
    cited = list(ProposalEvidence.objects.filter(proposal=proposal).values_list("entry_id", flat=True))
    assert sorted(cited) == sorted(out["sampleEntryIds"]) and len(cited) >= 5
    rows = Decision.objects.filter(entry_id__in=cited)
    assert rows.count() == len(cited)
    assert all(d.response_action == "dismiss" and d.action == "flag" and 0.6 <= (d.confidence or 0) < 0.7 for d in rows)
    assert all(run.window_start <= d.timestamp < run.window_end for d in rows)
    kinds = list(AuditEvent.objects.filter(agent=agent).values_list("kind", flat=True))
    assert kinds == ["proposal.created", "tuner.run"]
    created = AuditEvent.objects.get(kind="proposal.created")
    assert created.proposal == proposal and created.evidence_entry_ids == out["sampleEntryIds"]
    assert (created.before, created.after) == (0.6, 0.7)


def test_cycle__dismissal_cluster__stored_with_features_that_set_it_apart() -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    run = stat_run(agent)
    dismiss = Cluster.objects.filter(run=run, kind="dismiss").order_by("-size").first()
    assert dismiss is not None and dismiss.size >= 5
    assert "flag_threshold" in dismiss.thresholds
    assert dismiss.confidence_min >= 0.6 and dismiss.confidence_max < 0.7
    assert dismiss.distinguishing_features[0]["feature"] in {"night", "confidence"}
    assert {f["feature"] for f in dismiss.distinguishing_features} >= {"night"}
    assert len(dismiss.sample_entry_ids) >= 5


def test_cycle__same_cycle_twice__one_run_and_no_second_set_of_proposals() -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    first = stat_run(agent)
    second = stat_run(agent, now=NOW + timedelta(days=2))  # still the same ISO week
    assert second.pk == first.pk and output(second) == output(first)
    assert TunerRun.objects.count() == 1 and Proposal.objects.count() == 1
    assert AuditEvent.objects.filter(kind="tuner.run").count() == 1


def test_cycle__with_proposals__approvers_notified_after_commit(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    calls: list[int] = []
    monkeypatch.setattr("approvals.notifications.proposals_notify", lambda *, run_id: calls.append(run_id))
    with django_capture_on_commit_callbacks(execute=True):
        run = stat_run(agent)
    assert calls == [run.pk]


def test_cycle__older_pending_proposal__superseded_with_an_audit_row() -> None:
    agent, _ = make_agent()
    old = make_proposal(agent, threshold="escalate_threshold", current=0.85, proposed=0.9, now=NOW - timedelta(days=7))
    log_rows(agent, flag_too_low_rows())
    stat_run(agent)
    old.refresh_from_db()
    assert old.status == "superseded"
    event = AuditEvent.objects.get(kind="proposal.superseded")
    assert event.proposal == old and event.threshold_name == "escalate_threshold"


def test_cycle__threshold_rolled_back_since_last_cycle__no_proposal_for_it_and_summary_says_so() -> None:
    agent, _ = make_agent()
    Proposal.objects.create(
        agent=agent,
        threshold_name="flag_threshold",
        current_value=0.55,
        proposed_value=0.6,
        direction="increase",
        confidence="high",
        expected_impact="x",
        evidence_count=5,
        risk_assessment="x",
        status="rolled_back",
        created_at=NOW - timedelta(days=9),
        decided_at=NOW - timedelta(days=8),
        rolled_back_at=NOW - timedelta(days=3),
    )
    log_rows(agent, flag_too_low_rows())
    run = stat_run(agent)
    assert output(run)["proposals"] == []
    assert "flag_threshold" in output(run)["summary"] and "rolled back" in output(run)["summary"]
    assert any("rolled back" in n for n in run.notes)


def rejected(agent: Agent, n: int, *, evidence: int, rationale: str = "night shift volumes are seasonal") -> None:
    for i in range(n):
        Proposal.objects.create(
            agent=agent,
            threshold_name="flag_threshold",
            current_value=0.6,
            proposed_value=0.66,
            direction="increase",
            confidence="medium",
            expected_impact="x",
            evidence_count=evidence,
            risk_assessment="x",
            status="rejected",
            rationale=f"{rationale} ({i})",
            created_at=NOW - timedelta(days=30 - i),
            decided_at=NOW - timedelta(days=29 - i),
        )


def test_cycle__three_rejections_in_a_row__kind_suppressed_and_memory_recorded() -> None:
    agent, _ = make_agent()
    rejected(agent, 3, evidence=500)
    log_rows(agent, flag_too_low_rows())
    run = stat_run(agent)
    assert output(run)["proposals"] == []
    memory = RejectionMemory.objects.get(agent=agent)
    assert (memory.threshold_name, memory.direction, memory.lifted_at) == ("flag_threshold", "increase", None)
    assert memory.rationales[0].startswith("night shift volumes are seasonal")
    assert any(n.startswith("suppressed flag_threshold increase") for n in run.notes)
    assert run.stats["constraints"][0]["rejections"] == 3


def test_cycle__two_rejections__no_memory_and_proposal_made() -> None:
    agent, _ = make_agent()
    rejected(agent, 2, evidence=500)
    log_rows(agent, flag_too_low_rows())
    run = stat_run(agent)
    assert len(output(run)["proposals"]) == 1 and not RejectionMemory.objects.exists()


def test_cycle__remembered_kind_whose_evidence_has_grown__memory_lifted_and_proposal_made() -> None:
    agent, _ = make_agent()
    rejected(agent, 3, evidence=10)
    log_rows(agent, flag_too_low_rows())
    run = stat_run(agent)
    assert len(output(run)["proposals"]) == 1
    assert RejectionMemory.objects.get(agent=agent).lifted_at == NOW
    assert any("lifted" in n for n in run.notes)


def running_run(agent: Agent, *, started_ago: timedelta, heartbeat_ago: timedelta | None) -> TunerRun:
    """A run left ``running`` by a worker, as the database holds it."""
    wall = timezone.now()
    return TunerRun.objects.create(
        agent=agent,
        cycle=NOW.date(),
        status="running",
        started_at=wall - started_ago,
        heartbeat_at=None if heartbeat_ago is None else wall - heartbeat_ago,
        window_start=NOW - timedelta(weeks=4),
        window_end=NOW,
        created_at=NOW,
    )


def test_cycle__run_of_a_killed_worker__taken_over_once_its_heartbeat_is_three_beats_old(settings: Any) -> None:
    settings.TUNER_HEARTBEAT_SECONDS = 60
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    dead = running_run(agent, started_ago=timedelta(minutes=5), heartbeat_ago=timedelta(minutes=3, seconds=5))

    run = stat_run(agent)
    assert run.pk == dead.pk and TunerRun.objects.count() == 1
    assert run.status == "done" and len(output(run)["proposals"]) == 1 and Proposal.objects.count() == 1
    assert run.started_at is not None and dead.started_at is not None and run.started_at > dead.started_at
    assert run.heartbeat_at is not None and run.heartbeat_at >= run.started_at


def test_cycle__running_run_without_a_heartbeat__taken_over_three_beats_after_its_start(settings: Any) -> None:
    settings.TUNER_HEARTBEAT_SECONDS = 60
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    running_run(agent, started_ago=timedelta(minutes=3, seconds=5), heartbeat_ago=None)
    run = stat_run(agent)
    assert run.status == "done" and len(output(run)["proposals"]) == 1 and TunerRun.objects.count() == 1


def test_cycle__long_run_with_a_fresh_heartbeat__not_stolen(settings: Any) -> None:
    settings.TUNER_HEARTBEAT_SECONDS = 60
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    alive = running_run(agent, started_ago=timedelta(hours=2), heartbeat_ago=timedelta(minutes=2, seconds=50))
    run = stat_run(agent)
    assert run.status == "running" and run.started_at == alive.started_at and run.heartbeat_at == alive.heartbeat_at
    assert not Proposal.objects.exists()


class SlowGenerator:
    """The statistical generator after ``seconds``, reading the run's heartbeat before and after the wait."""

    name = "statistical"

    def __init__(self, agent: Agent, seconds: float) -> None:
        self.agent, self.seconds = agent, seconds
        self.seen: list[Any] = []

    def _heartbeat(self) -> Any:
        from django.db import OperationalError

        for _ in range(50):
            try:
                return TunerRun.objects.values_list("heartbeat_at", flat=True).get(agent=self.agent)
            except OperationalError:  # SQLite's shared in-memory test database: the beat holds the table a moment
                time.sleep(0.01)
        raise AssertionError("the run could not be read")

    def generate(self, ctx: GenerationContext) -> Generated:
        self.seen.append(self._heartbeat())
        time.sleep(self.seconds)
        self.seen.append(self._heartbeat())
        return StatisticalGenerator().generate(ctx)


@pytest.mark.django_db(transaction=True)
def test_cycle__slow_generator__the_heartbeat_thread_advances_heartbeat_at_while_it_computes(settings: Any) -> None:
    settings.TUNER_HEARTBEAT_SECONDS = 0.2
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows(200))
    slow = SlowGenerator(agent, 1.5)
    run = tuner_cycle_run(agent=agent, now=NOW, generator=slow)

    assert run.status == "done" and len(output(run)["proposals"]) == 1
    first, last = slow.seen
    assert first is not None and last is not None
    assert (last - first).total_seconds() >= 0.8  # beats every 0.2 s during the 1.5 s wait
    assert run.started_at is not None and run.finished_at is not None
    assert run.started_at <= first < last <= run.finished_at


def test_cycle__run_running_in_another_worker__left_alone() -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    TunerRun.objects.create(
        agent=agent,
        cycle=NOW.date(),
        status="running",
        started_at=timezone.now(),
        window_start=NOW - timedelta(weeks=4),
        window_end=NOW,
        created_at=NOW,
    )
    run = stat_run(agent)
    assert run.status == "running" and not Proposal.objects.exists()


def test_cycle__failure_while_storing__nothing_half_stored_and_the_retry_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    import tuner.services as services

    real = services.audit_record

    def dies_at_the_end(**kw: Any) -> Any:
        if kw["kind"] == "tuner.run":
            raise RuntimeError("worker killed")
        return real(**kw)

    monkeypatch.setattr(services, "audit_record", dies_at_the_end)
    with pytest.raises(RuntimeError):
        stat_run(agent)
    run = TunerRun.objects.get()
    assert run.status == "failed" and "worker killed" in run.errors[0]
    assert not Proposal.objects.exists() and not Cluster.objects.exists() and not AuditEvent.objects.exists()

    monkeypatch.setattr(services, "audit_record", real)
    again = stat_run(agent)
    assert again.pk == run.pk and again.status == "done" and Proposal.objects.count() == 1


def test_cycle__ten_days_of_responses__baseline_period_nothing_proposed() -> None:
    agent, _ = make_agent()
    rows = [r for r in flag_too_low_rows() if r["at"] >= NOW - timedelta(days=10)]
    log_rows(agent, rows)
    run = stat_run(agent)
    assert output(run)["proposals"] == [] and output(run)["summary"].startswith("Baseline period")
    assert output(run)["systemHealth"] == "baseline"  # never "healthy" before anything has been measured


def test_cycle__two_weeks_of_decisions_answered_a_day_or_two_late__the_first_proposals_come_now() -> None:
    """The seed's timing: an agent that starts on a Monday gets its first proposals two Mondays later, although
    the answers to its last day or two of decisions have not come in yet (they lag 24-48 h)."""
    agent, _ = make_agent()
    rows = flag_too_low_rows(weeks=2)
    for row in rows:
        if NOW - row["at"] < timedelta(hours=40):
            row["response"] = None
    log_rows(agent, rows)
    run = stat_run(agent)
    assert run.stats["responseDays"] == 14.0
    assert output(run)["systemHealth"] == "needs-attention"
    (out,) = output(run)["proposals"]
    assert (out["thresholdName"], out["direction"]) == ("flag_threshold", "increase")


def test_cycle__one_week_of_decisions__baseline_whatever_the_dismissal_rate() -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows(weeks=1))
    run = stat_run(agent)
    assert run.stats["responseDays"] == 7.0
    assert output(run)["systemHealth"] == "baseline" and output(run)["proposals"] == []
    assert "holds 7.0 days of decisions with responses" in output(run)["summary"]


def test_cycle__few_dismissals__healthy_and_nothing_proposed() -> None:
    agent, _ = make_agent()
    rows = flag_too_low_rows()
    for i, row in enumerate(rows):
        if row["response"] == "dismiss" and i % 4:
            row["response"] = "approve"
    log_rows(agent, rows)
    run = stat_run(agent)
    assert run.output == {"proposals": [], "summary": output(run)["summary"], "systemHealth": "healthy"}
    assert "below 15%" in output(run)["summary"]


def test_cycle__modify_to_a_weaker_action__counts_as_a_dismissal() -> None:
    agent, _ = make_agent()
    rows = flag_too_low_rows()
    for row in rows:
        if row["response"] == "dismiss":
            row.update(response="modify", modified="auto-resolve")
    log_rows(agent, rows)
    run = stat_run(agent)
    (out,) = output(run)["proposals"]
    assert out["direction"] == "increase" and out["proposedValue"] == 0.7
    assert set(
        Decision.objects.filter(entry_id__in=out["sampleEntryIds"]).values_list("response_action", flat=True)
    ) == {"modify"}


def test_cycle__rule_based_agent__clusters_by_matched_rule_combination() -> None:
    agent, _ = make_agent(rule_based=True)
    rows = flag_too_low_rows()
    for row in rows:
        row["rules"] = ["night_owl", "new_device"] if row["response"] == "dismiss" else ["velocity"]
    log_rows(agent, rows)
    run = stat_run(agent)
    dismiss = Cluster.objects.get(run=run, kind="dismiss")
    assert dismiss.rules == ["new_device", "night_owl"] and dismiss.label == "new_device + night_owl"


class ExplodingGenerator:
    name = "statistical"

    def generate(self, ctx: GenerationContext) -> Generated:
        raise RuntimeError("boom")


def test_cycle__generator_crashes__run_failed_with_the_error() -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows(60))
    with pytest.raises(RuntimeError):
        tuner_cycle_run(agent=agent, now=NOW, generator=ExplodingGenerator())
    run = TunerRun.objects.get()
    assert run.status == "failed" and run.errors == ["RuntimeError: boom"]


def test_cycle__no_decisions_at_all__baseline_run_stored_without_error() -> None:
    agent, _ = make_agent()
    run = stat_run(agent)
    assert run.status == "done" and output(run)["proposals"] == []
    assert output(run)["summary"].startswith("Baseline period") and run.stats["decisions"] == 0


def test_cycle__healthy_cycle__still_supersedes_the_last_cycles_pending_proposals() -> None:
    agent, _ = make_agent()
    old = make_proposal(agent, current=0.6, proposed=0.65, now=NOW - timedelta(days=7))
    run = stat_run(agent)
    old.refresh_from_db()
    assert output(run)["proposals"] == [] and old.status == "superseded"


def test_cycle__half_the_queue_unanswered__confidence_capped_low_and_summary_says_why() -> None:
    agent, _ = make_agent()
    rows = flag_too_low_rows(600)
    for i, row in enumerate(rows):
        if i % 2:
            row["response"] = None
    log_rows(agent, rows)
    run = stat_run(agent)
    assert [p["confidence"] for p in output(run)["proposals"]] == ["low"]
    assert "capped at low" in output(run)["summary"] and output(run)["systemHealth"] == "degraded"


def test_cycle__cost_objective_with_dear_misses__no_increase_that_loses_real_cases() -> None:
    agent, _ = make_agent(objective="cost", miss_cost=50.0)
    rows = flag_too_low_rows()
    for i, row in enumerate(rows):
        # Real cases hide among the low flags, far more than reviewers' slips would explain: each costs 50 false
        # alarms.
        if row["response"] == "dismiss" and i % 3 == 0:
            row["response"] = "approve"
    log_rows(agent, rows)
    run = stat_run(agent)
    assert [p for p in output(run)["proposals"] if p["thresholdName"] == "flag_threshold"] == []


def test_weekly_task__fans_out_one_cycle_task_per_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.tasks import tuner_weekly_task

    first, _ = make_agent("one")
    second, _ = make_agent("two")
    sent: list[int] = []
    monkeypatch.setattr("tuner.tasks.tuner_cycle_task.delay", lambda pk: sent.append(pk))
    assert tuner_weekly_task() == [first.pk, second.pk] and sent == [first.pk, second.pk]
    assert tuner_weekly_task(second.pk) == [second.pk]


def test_cycle_task__acknowledged_late_requeued_on_worker_loss_and_limited_by_tuner_time_limit(settings: Any) -> None:
    from loopsite.celery import app
    from tuner.tasks import tuner_cycle_task

    assert tuner_cycle_task.acks_late is True and tuner_cycle_task.reject_on_worker_lost is True
    assert tuner_cycle_task.time_limit == settings.TUNER_TIME_LIMIT
    assert 0 < tuner_cycle_task.soft_time_limit < tuner_cycle_task.time_limit
    if settings.REDIS_URL:  # the configured tier: the broker hands a dead worker's message out again after it
        assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] == settings.TUNER_TIME_LIMIT
        assert app.conf.broker_transport_options["visibility_timeout"] == tuner_cycle_task.time_limit


def test_settings__redis_broker__visibility_timeout_is_the_tuner_time_limit(tmp_path: Any) -> None:
    from tests.test_settings import django_setup

    show = (
        "from django.conf import settings as s; from tuner.tasks import tuner_cycle_task as t; "
        "print(s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'], t.time_limit, t.soft_time_limit)"
    )
    configured = django_setup(tmp_path, show, REDIS_URL="redis://127.0.0.1:6379/0", TUNER_TIME_LIMIT="900")
    assert configured.returncode == 0, configured.stderr
    assert configured.stdout.split() == ["900", "900", "675"]
    default = django_setup(tmp_path, show, REDIS_URL="redis://127.0.0.1:6379/0")
    assert default.returncode == 0, default.stderr
    assert default.stdout.split() == ["1200", "1200", "900"]
    # The filesystem broker of the embedded mode has no visibility timeout (see docs/running.md).
    embedded = django_setup(tmp_path, "from django.conf import settings as s; print(s.CELERY_BROKER_TRANSPORT_OPTIONS)")
    assert embedded.returncode == 0 and "visibility_timeout" not in embedded.stdout


def test_settings__heartbeat_that_does_not_fit_three_times_in_the_time_limit__improperly_configured(
    tmp_path: Any,
) -> None:
    from tests.test_settings import django_setup

    result = django_setup(tmp_path, TUNER_TIME_LIMIT="120", TUNER_HEARTBEAT_SECONDS="60")
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr
    assert "three beats must fit in TUNER_TIME_LIMIT (120 s)" in result.stderr


def test_cycle_task__cycle_running_in_a_live_worker__looks_again_once_a_dead_ones_heartbeat_would_be_stale(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import Retry

    from tuner.selectors import cycle_window
    from tuner.tasks import tuner_cycle_task

    settings.TUNER_HEARTBEAT_SECONDS = 60
    agent, _ = make_agent()
    wall = timezone.now()
    window = cycle_window(agent=agent, now=wall)
    TunerRun.objects.create(
        agent=agent,
        cycle=window.cycle,
        status="running",
        started_at=wall - timedelta(minutes=1),
        heartbeat_at=wall - timedelta(seconds=10),
        window_start=window.start,
        window_end=window.end,
        created_at=wall,
    )
    asked: list[dict[str, Any]] = []

    def retry(**kw: Any) -> Retry:
        asked.append(kw)
        return Retry("later")

    monkeypatch.setattr(tuner_cycle_task, "retry", retry)
    with pytest.raises(Retry):
        tuner_cycle_task(agent.pk)
    (kw,) = asked
    assert kw["countdown"] == 4 * 60  # three missed beats make it stale, plus one
    assert TunerRun.objects.get().status == "running"
