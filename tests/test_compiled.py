"""Querysets compiled once and run with new values (``loopsite.compiled``) answer as the same querysets would."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.test.utils import CaptureQueriesContext

import loopsite.compiled
from auditlog.models import Decision
from loopsite.compiled import Param, compiled, totals
from tests.approvals.conftest import log_responded
from tests.factories import NOW, make_agent
from thresholds.models import ConfigVersion

pytestmark = pytest.mark.django_db

TIME = Decision._meta.get_field("timestamp")
AGENT = Decision._meta.get_field("agent")
built: list[str] = []


def _between(lo: Any, hi: Any) -> Q:
    return Q(timestamp__gte=lo, timestamp__lt=hi)


@compiled(Decision)
def _window(with_errors_only: bool) -> QuerySet[Decision, Any]:
    built.append(f"window {with_errors_only}")
    qs = Decision.objects.filter(_between(Param("lo", TIME), Param("hi", TIME)), agent_id=Param("agent", AGENT))
    if with_errors_only:
        qs = qs.exclude(response_action="approve")
    return qs.order_by("timestamp", "seq").values_list("entry_id", "timestamp", "features", "response_action")


@compiled(Decision)
def _window_totals() -> QuerySet[Decision]:
    qs = Decision.objects.filter(_between(Param("lo", TIME), Param("hi", TIME)), agent_id=Param("agent", AGENT))
    return totals(qs, n=Count("seq"), errors=Count("seq", filter=~Q(response_action="approve")))


@compiled(ConfigVersion)
def _versions() -> QuerySet[ConfigVersion]:
    return ConfigVersion.objects.filter(agent_id=Param("agent", ConfigVersion._meta.get_field("agent"))).order_by(
        "number"
    )


@pytest.fixture
def logged() -> Any:
    agent, _ = make_agent(now=NOW - timedelta(days=30))
    other, _ = make_agent("other", now=NOW - timedelta(days=30))
    start = NOW - timedelta(days=10)
    log_responded(agent, prefix="a", n=60, errors=15, start=start)
    log_responded(other, prefix="b", n=30, errors=10, start=start)
    return agent, other, start


WINDOWS = [(0, 60), (60, 200), (0, 1000), (500, 600), (300, 301)]  # minutes after the first decision


def test_rows__new_values_each_run__the_queryset_s_rows_converted_alike_compiled_once_a_shape(logged: Any) -> None:
    agent, other, start = logged
    built.clear()
    for who in (agent, other):
        for errors_only in (False, True):
            for a, b in WINDOWS:
                lo, hi = start + timedelta(minutes=a), start + timedelta(minutes=b)
                expected = Decision.objects.filter(_between(lo, hi), agent=who)
                if errors_only:
                    expected = expected.exclude(response_action="approve")
                want = list(
                    expected.order_by("timestamp", "seq").values_list(
                        "entry_id", "timestamp", "features", "response_action"
                    )
                )
                got = _window(errors_only).rows(lo=lo, hi=hi, agent=who.pk)
                assert got == want, (who.agent_id, errors_only, a, b)
    assert sorted(built) == ["window False", "window True"]
    # The values come back as the ORM hands them out: aware datetimes, decoded JSON.
    [(_, when, features, _)] = _window(False).rows(lo=start, hi=start + timedelta(minutes=1), agent=agent.pk)
    assert when == start and when.tzinfo is not None
    assert isinstance(features, dict)


def test_totals__one_row_over_every_matching_row__as_aggregate_counts(logged: Any) -> None:
    agent, other, start = logged
    for who in (agent, other):
        for a, b in WINDOWS:
            lo, hi = start + timedelta(minutes=a), start + timedelta(minutes=b)
            want = Decision.objects.filter(_between(lo, hi), agent=who).aggregate(
                n=Count("seq"), errors=Count("seq", filter=~Q(response_action="approve"))
            )
            assert _window_totals().one(lo=lo, hi=hi, agent=who.pk) == (want["n"], want["errors"])
    assert _window_totals().one(lo=start, hi=start + timedelta(days=1), agent=agent.pk) == (60, 15)


def test_instances__the_model_s_objects_as_a_queryset_reads_them(logged: Any) -> None:
    agent, _other, _start = logged
    got = _versions().instances(ConfigVersion, agent=agent.pk)
    want = list(ConfigVersion.objects.filter(agent=agent).order_by("number"))

    def shown(v: ConfigVersion) -> tuple[Any, ...]:
        return (v.pk, v.agent_id, v.number, v.values, v.activated_at, v.superseded_at, v.source, v._state.db)

    assert [shown(v) for v in got] == [shown(v) for v in want] and got
    assert not any(v._state.adding for v in got)
    with pytest.raises(ValueError, match="model's own columns"):
        _window(False).instances(Decision, lo=NOW, hi=NOW, agent=agent.pk)


@pytest.mark.parametrize("values", [{"lo": None}, {}], ids=["None", "missing"])
def test_rows__a_param_without_a_value__refused_before_anything_is_sent(logged: Any, values: dict[str, Any]) -> None:
    agent, _other, start = logged
    given = {"lo": start, "hi": NOW, "agent": agent.pk}
    given.pop("lo")
    given.update(values)
    with CaptureQueriesContext(connection) as sent, pytest.raises(ValueError, match="no value for 'lo'"):
        _window(False).rows(**given)
    assert sent.captured_queries == []


def test_statement__the_router_chooses_the_database_at_each_run(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[type] = []

    def db_for_read(model: type, **hints: Any) -> str:
        asked.append(model)
        return "default"

    monkeypatch.setattr(loopsite.compiled.router, "db_for_read", db_for_read)
    _versions()
    _versions()
    assert asked == [ConfigVersion, ConfigVersion]
