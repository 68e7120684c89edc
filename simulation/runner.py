"""The closed loop on a simulated clock, against the configured database.

Each simulated hour the reference agent reads its live config and logs that hour's cases through the agent client
(``loopsite_client.Client``, answered in-process by the API's views at the simulated time: see
``simulation/agent_transport.py``); the reviewers answer queued decisions one to two days later through
``response_record_bulk``; the watchdog runs; every Monday the tuner runs its cycle and the approver policy
decides what it proposed. Everything takes the simulated time as ``now``.

A run owns one agent (``sim-<scenario>-<seed>`` by default) and deletes a previous agent of that id first, so a
run never mixes with another's history.
"""

import gc
import heapq
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from loopsite_client import Client

from auditlog.models import Decision
from auditlog.services import BulkResponse, response_record_bulk
from loopsite.compiled import Param, compiled
from people.roles import Role, role_groups_ensure
from simulation.agent_transport import InProcessTransport
from simulation.world import Cases, Scenario, TruthCounts, World, agent_decide, reviewer_response
from thresholds.metrics import weekly_metrics
from thresholds.models import Agent, ConfigVersion
from thresholds.selectors import config_get_live
from thresholds.services import agent_create
from tuner.models import Proposal

logger = logging.getLogger(__name__)

APPROVER = "sim-approver"
OPERATOR = "sim-operator"
TUNER_HOUR = 2  # Monday 02:00: the weekly cycle
APPROVER_HOUR = 10  # Monday 10:00: the approver reads the proposals
DRAIN_DAYS = 2  # after the last day the reviewers finish the queue


def monday_on_or_before(day: date) -> date:
    return day - timedelta(days=day.weekday())


def default_start(weeks: int, today: date | None = None) -> date:
    """The Monday ``weeks`` weeks before this week's, so a run ends where the dashboard looks."""
    today = today or datetime.now(UTC).date()
    return monday_on_or_before(today) - timedelta(weeks=weeks)


@contextmanager
def _quiet() -> Iterator[None]:
    """The services log every event; a simulation makes hundreds of thousands of them. Errors still show."""
    from django.test.utils import override_settings

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        # Nobody is emailed about a simulated agent's proposals and rollbacks.
        with override_settings(EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend"):
            yield
    finally:
        logging.disable(previous)


class AgentClientFailed(RuntimeError):
    """The reference agent's client could not read its config or deliver its decisions, or the API refused some of
    them (dead letters). In a simulation that is a bug, never a condition to ride out."""


class AgentIdTaken(ValueError):
    """A simulation never writes over an agent's history: the audit trail is append-only for every agent."""


def agent_id_free(base: str, *, explicit: bool = False) -> str:
    """``base`` when no agent has it, else the first of ``base-2``, ``base-3``, ... that is free. An id the user
    named (``explicit``) is never changed: taken, it is refused."""
    if not Agent.objects.filter(agent_id=base).exists():
        return base
    if explicit:
        raise AgentIdTaken(
            f"agent {base!r} exists, and a simulation never writes over an agent's history: name another agent "
            "id, or run in a database of its own (--database NAME)"
        )
    n = 2
    while Agent.objects.filter(agent_id=f"{base}-{n}").exists():
        n += 1
    return f"{base}-{n}"


def user_ensure(username: str, role: Role, *, staff: bool = False) -> Any:
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username, defaults={"is_staff": staff})
    if created:
        user.set_unusable_password()
        user.save()
    if role is not Role.ADMIN:
        user.groups.add(role_groups_ensure()[role])
    return user


@dataclass
class WeekRow:
    """One line of the weekly table: the database's rates, the hidden truth's rates, and what the loop did."""

    week: int
    metrics: dict[str, Any]
    truth: TruthCounts
    thresholds: dict[str, float]
    health: str | None = None
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "week": self.week,
            "weekStart": m["weekStart"],
            "decisions": m["decisions"],
            "queued": m["queued"],
            "responses": m["responses"],
            "responseRate": m["responseRate"],
            "dismissalRate": m["dismissalRate"],
            "escalationRate": m["escalationRate"],
            "modificationRate": m["modificationRate"],
            "trueFalseAlarmRate": self.truth.false_alarm_rate,
            "trueMissRate": self.truth.miss_rate,
            "initialFalseAlarmRate": self.truth.initial_false_alarm_rate,
            "initialMissRate": self.truth.initial_miss_rate,
            "trueFalseAlarms": self.truth.false_alarms,
            "trueMisses": self.truth.misses,
            "initialMisses": self.truth.initial_misses,
            "initialFalseAlarms": self.truth.initial_false_alarms,
            "positives": self.truth.positives,
            "proposals": m["proposals"],
            "accepted": m["accepted"],
            "rollbacks": m["rollbacks"],
            "configVersion": m["configVersion"],
            "systemHealth": self.health,
            "thresholds": dict(self.thresholds),
        }


@dataclass
class RunResult:
    agent_id: str
    scenario: str
    seed: int
    per_day: int
    weeks: int
    start: date
    rows: list[WeekRow]
    events: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.rows]


@dataclass(order=True)
class _Due:
    at: datetime
    entry_id: str = field(compare=True)
    raw: dict[str, Any] = field(compare=False, default_factory=dict)
    responder: str = field(compare=False, default="")


class Loop:
    """One agent's closed loop over simulated days."""

    def __init__(
        self,
        *,
        scenario: Scenario,
        agent_id: str,
        start: date,
        seed: int,
        name: str = "",
        reviewers: int = 5,
        approver: Any = None,
    ) -> None:
        self.scenario = scenario
        self.agent_id = agent_id
        self.start = datetime(start.year, start.month, start.day, tzinfo=UTC)
        self.seed = seed
        self.reviewers = reviewers
        self.due: list[_Due] = []
        self.truth: dict[int, TruthCounts] = {}
        self.health: dict[int, tuple[str, str]] = {}
        self.events: list[dict[str, Any]] = []
        self.actions = list(scenario.actions)
        agent_id_free(agent_id, explicit=True)
        with _quiet():
            self.agent, self.key = agent_create(
                agent_id=agent_id,
                name=name or f"Simulation: {scenario.name} (seed {seed})",
                actions=self.actions,
                thresholds=[
                    {
                        "name": t.name,
                        "value": t.value,
                        "action": t.action,
                        "min": t.min,
                        "max": t.max,
                        "rule": t.rule,
                        "scoreFeature": t.score_feature,
                    }
                    for t in scenario.thresholds
                ],
                now=self.start,
                review_sample_rate=scenario.sample_rate,
                binary_mode=scenario.binary,
                rule_based=scenario.rule_based,
                **dict(scenario.extra.get("agent_options", {})),  # e.g. the tuner's objective (replay --objective)
            )
            self.approver = approver or user_ensure(APPROVER, Role.APPROVER)
            self.operator = user_ensure(OPERATOR, Role.APPROVER, staff=True)
        self.now = self.start  # the simulated time at which the API answers the agent's requests
        self.transport = InProcessTransport(clock=lambda: self.now)
        self._client: Client | None = None
        self._spool_dir: str | None = None

    # --- the reference agent's client ----------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The reference agent's ``loopsite_client.Client``, made on first use. No threads: the config is read on
        ``refresh()`` and the spool is sent on ``flush()``, on this thread, through the API's views in-process."""
        if self._client is None:
            self._spool_dir = tempfile.mkdtemp(prefix=f"loopsite-{self.agent_id}-spool-")
            self._client = Client(
                "inproc://loopsite",
                self.key,
                self._spool_dir,
                transport=self.transport,
                poll_interval=None,
                background=False,
                batch_size=1000,
            )
        return self._client

    def _check_client(self, client: Client) -> None:
        dead = client.stats()["dead_lettered"]
        if dead:
            path = client.dead_letter_path
            first = path.read_text(encoding="utf-8").splitlines()[0] if path.exists() else ""
            raise AgentClientFailed(f"the API refused {dead} of the agent's decisions; the first: {first[:2000]}")

    def close(self, *, check: bool = True) -> None:
        """Send what is left, stop the client and remove its spool; with ``check``, fail on anything undelivered."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if not check:
                with suppress(Exception):  # the run failed: its own error is the one to see
                    client.close(timeout=1.0)
                return
            flushed = client.close(timeout=10.0)
            self._check_client(client)
            if not flushed:
                raise AgentClientFailed(f"the agent's client could not deliver everything: {client.last_error}")
        finally:
            if self._spool_dir is not None:
                shutil.rmtree(self._spool_dir, ignore_errors=True)
                self._spool_dir = None

    @contextmanager
    def _agent_running(self) -> Iterator[None]:
        """Around a run: the client is closed at its end (a failure to deliver fails the run; after an error the
        error is what to see), and what exists at its start is kept out of the garbage collector's full passes.

        Those objects (Django, numpy, the world) are never garbage, and the run makes millions of short-lived ones
        (each entry is decoded twice on its way through the client and the API) that would have the collector scan
        them again and again."""
        gc.freeze()
        try:
            yield
        except BaseException:
            self.close(check=False)
            raise
        else:
            self.close()
        finally:
            gc.unfreeze()

    # --- one hour ------------------------------------------------------------------------------------------

    def log_hour(self, *, day: int, hour: int, cases: Cases, now: datetime, rng: np.random.Generator) -> None:
        """The agent decides this hour's cases with its live thresholds and logs them; reviewers plan answers."""
        lo, hi = np.searchsorted(cases.seconds, [hour * 3600, (hour + 1) * 3600])
        if hi <= lo:
            return
        self.now = now
        client = self.client
        # The agent reads the live config once an hour (the simulated clock has no background poller).
        if not client.refresh():
            raise AgentClientFailed(f"the agent's client could not read its config: {client.last_error}")
        thresholds = client.config().thresholds
        sl = slice(int(lo), int(hi))
        decided = agent_decide(self.scenario, cases.signals, thresholds, sl=sl)
        day_start = self.start + timedelta(days=day)
        entries: list[dict[str, Any]] = []
        ids = []
        for j, i in enumerate(range(lo, hi)):
            entry_id = f"{self.agent_id}-d{day:04d}-{i:05d}"
            ids.append(entry_id)
            action = self.actions[int(decided.action[j])]
            entries.append(
                {
                    "id": entry_id,
                    "timestamp": (day_start + timedelta(seconds=int(cases.seconds[i]))).isoformat(),
                    "sessionId": f"{self.agent_id}-d{day:04d}-h{hour:02d}",
                    "decision": {
                        "action": action,
                        # A rule-based agent leaves confidence out: the rules that fired stand for it.
                        **({} if self.scenario.rule_based else {"confidence": round(float(decided.confidence[j]), 4)}),
                        "thresholdUsed": float(decided.threshold_used[j]),
                        "thresholdName": decided.threshold_name[j],
                        "reasoning": f"{action}: score {decided.confidence[j]:.2f} against "
                        f"{decided.threshold_name[j]} {decided.threshold_used[j]:g}",
                    },
                    "context": {
                        "inputHash": f"sim:{self.seed}:{day}:{i}",
                        "features": {k: float(v[i]) for k, v in cases.features.items()},
                        "matchedRules": decided.matched_rules[j],
                    },
                }
            )
        # The client fills agentId and configVersion (the version it read); the ids and timestamps are the world's.
        for entry in entries:
            client.log(entry)
        if not client.flush(timeout=10.0):
            raise AgentClientFailed(f"the agent's client could not deliver this hour's decisions: {client.last_error}")
        self._check_client(client)
        week = day // 7
        initial = agent_decide(self.scenario, cases.signals, self.scenario.initial_values, sl=sl).action
        self.truth.setdefault(week, TruthCounts()).add(decided.action, cases.truth[sl], initial)
        # The hour's time range keeps SQLite on (agent, timestamp): with the agent and the ids alone it walks
        # every decision of the agent, a scan that grows with the run (30 ms an hour by week 8). The range holds
        # this hour's decisions only; the ids are matched here rather than as 80-odd query parameters, and with no
        # ORDER BY: building those took the ORM longer than the read (a tenth of the logging phase). The statement
        # is compiled once (``loopsite.compiled``).
        hour_start = day_start + timedelta(hours=hour)
        rows = _queued_between().rows(agent=self.agent.pk, lo=hour_start, hi=hour_start + timedelta(hours=1))
        queued = {entry_id for (entry_id,) in rows}.intersection(ids)
        for j, i in enumerate(range(lo, hi)):
            entry_id = ids[j]
            if entry_id not in queued or cases.u_respond[i] >= self.scenario.response_rate:
                continue
            review = reviewer_response(
                self.scenario,
                taken=int(decided.action[j]),
                truth=int(cases.truth[i]),
                u_noise=float(cases.u_noise[i]),
                u_modify=float(cases.u_modify[i]),
                delay_hours=float(cases.delay_hours[i]),
            )
            at = day_start + timedelta(seconds=int(cases.seconds[i]), hours=review.delay_hours)
            raw: dict[str, Any] = {"action": review.action, "respondedAt": at.isoformat()}
            if review.modified_action:
                raw["modifiedAction"] = review.modified_action
            responder = f"sim-reviewer-{int(rng.integers(self.reviewers)) + 1}"
            heapq.heappush(self.due, _Due(at, entry_id, raw, responder))

    def respond_until(self, now: datetime) -> int:
        items = []
        while self.due and self.due[0].at <= now:
            d = heapq.heappop(self.due)
            items.append(BulkResponse(entry_id=d.entry_id, raw=d.raw, responder_id=d.responder))
        return response_record_bulk(items=items, now=now, source="import") if items else 0

    def watchdog(self, now: datetime) -> None:
        from approvals.watchdog import watchdog_run
        from rollouts.services import canaries_pass

        for judged in canaries_pass(now=now, agent=self.agent):
            if judged.version is not None:
                self.events.append(
                    {"at": now.isoformat(), "kind": f"canary-{judged.outcome}", "version": judged.version.number}
                )
        for version in watchdog_run(now=now, agent=self.agent):
            self.events.append(
                {"at": now.isoformat(), "kind": "rollback", "version": version.number, "reason": version.reason}
            )

    # --- weekly: the tuner and the approver ----------------------------------------------------------------

    def tuner_cycle(self, *, week: int, now: datetime) -> None:
        from tuner.services import tuner_cycle_run

        try:
            run = tuner_cycle_run(agent=self.agent, now=now)
        except Exception as exc:  # a failed cycle is logged by the tuner; the loop goes on, as beat would
            self.health[week] = ("failed", f"{type(exc).__name__}: {exc}")
            self.events.append({"at": now.isoformat(), "kind": "tuner-failed", "error": str(exc)})
            return
        output = run.output or {}
        self.health[week] = (str(output.get("systemHealth", "")), str(output.get("summary", "")))
        self.events.append(
            {
                "at": now.isoformat(),
                "kind": "tuner",
                "systemHealth": output.get("systemHealth"),
                "proposals": [
                    {k: p.get(k) for k in ("thresholdName", "currentValue", "proposedValue", "confidence")}
                    for p in output.get("proposals", [])
                ],
            }
        )

    def approver_policy(self, proposal: Proposal) -> tuple[bool, str]:
        """Accept high and medium confidence, reject low. A proposal flagged as a risk to missed signals is
        rejected unless its replay cuts more false alarms than the misses it risks cost at the agent's miss cost
        (a miss weighs ``miss_cost`` false alarms): reviewers' slips make almost every raise "risk" a few misses.
        """
        if proposal.confidence not in ("high", "medium"):
            return False, f"{proposal.confidence} confidence: rejected"
        if not proposal.risk_flagged:
            return True, f"{proposal.confidence} confidence, no flagged risk: accepted"
        impact = proposal.impact or {}
        cut = -float((impact.get("falseAlarms") or {}).get("change") or impact.get("falseAlarmChange") or 0.0)
        risked = float((impact.get("misses") or {}).get("change") or impact.get("missChange") or 0.0)
        cost = float(self.agent.miss_cost)
        if cut > 0 and risked * cost < cut:
            return True, (
                f"{proposal.confidence} confidence; flagged risk of {risked:.0f} missed signals weighed against "
                f"{cut:.0f} false alarms cut at {cost:g} to 1: accepted"
            )
        return False, f"flagged risk of {risked:.0f} missed signals against {cut:.0f} false alarms cut: rejected"

    def approver_decides(self, now: datetime) -> None:
        """The approver policy (``approver_policy``) applied to every pending proposal of the tuner."""
        from approvals.services import proposal_decide

        pending = Proposal.objects.filter(agent=self.agent, status=Proposal.Status.PENDING, created_by__isnull=True)
        for proposal in pending.order_by("rank", "pk"):
            accept, why = self.approver_policy(proposal)
            proposal_decide(
                proposal=proposal,
                actor=self.approver,
                decision="accept" if accept else "reject",
                rationale=f"Simulated approver policy: {why}.",
                now=now,
            )
            self.events.append(
                {
                    "at": now.isoformat(),
                    "kind": "accepted" if accept else "rejected",
                    "threshold": proposal.threshold_name,
                    "from": proposal.current_value,
                    "to": proposal.proposed_value,
                    "confidence": proposal.confidence,
                    "why": why,
                }
            )

    def harmless_change(self, now: datetime) -> bool:
        """With ``extra["harmless_first"] = (threshold, value)``: a harmless change made live just before the bad
        one (over-correction-back-to-back). Returns whether it made one."""
        from approvals.services import proposal_create_manual, proposal_decide

        first = self.scenario.extra.get("harmless_first")
        if not first:
            return False
        name, value = str(first[0]), float(first[1])
        current = config_get_live(agent=self.agent).thresholds[name]
        proposal = proposal_create_manual(
            agent=self.agent,
            threshold_name=name,
            proposed_value=value,
            rationale="Operator: a small tidy-up of the threshold.",
            actor=self.operator,
            now=now,
        )
        proposal_decide(proposal=proposal, actor=self.approver, decision="accept", rationale="Harmless.", now=now)
        self.events.append(
            {"at": now.isoformat(), "kind": "harmless-change", "threshold": name, "from": current, "to": value}
        )
        return True

    def bad_change(self, now: datetime) -> None:
        """An operator's change that raises misses, waved through by an approver (the over-correction)."""
        from approvals.services import proposal_create_manual, proposal_decide

        name = self.scenario.bad_threshold
        current = config_get_live(agent=self.agent).thresholds[name]
        value = round(current * (1 + self.scenario.bad_move) - 1e-9, 6)
        proposal = proposal_create_manual(
            agent=self.agent,
            threshold_name=name,
            proposed_value=value,
            rationale="Operator: too many alerts this week, raise it as far as allowed.",
            actor=self.operator,
            now=now,
        )
        proposal_decide(
            proposal=proposal,
            actor=self.approver,
            decision="accept",
            rationale="Waved through without looking at the evidence.",
            now=now,
        )
        self.events.append(
            {"at": now.isoformat(), "kind": "bad-change", "threshold": name, "from": current, "to": value}
        )

    # --- the whole run ----------------------------------------------------------------------------------------

    def run(
        self,
        *,
        days: int,
        cases_for_day: Callable[[int], Cases | None],
        progress: Callable[[int], None] | None = None,
        first_cycle_week: int = 2,
        until: datetime | None = None,
        drain: bool = True,
    ) -> list[WeekRow]:
        """Run ``days`` days (stopping early at ``until``); with ``drain`` the reviewers then finish the queue."""
        rng = np.random.default_rng([self.seed, 99])
        bad_day = (self.scenario.bad_change_week - 1) * 7 if self.scenario.bad_change_week else None
        with _quiet(), self._agent_running():
            for day in range(days + (DRAIN_DAYS if drain else 0)):
                cases = cases_for_day(day) if day < days else None
                for hour in range(24):
                    hour_start = self.start + timedelta(days=day, hours=hour)
                    if until is not None and hour_start + timedelta(hours=1) > until:
                        break
                    if day < days and day % 7 == 0 and hour == TUNER_HOUR and day // 7 >= first_cycle_week:
                        self.respond_until(hour_start)
                        self.tuner_cycle(week=day // 7, now=hour_start)
                    if day < days and day % 7 == 0 and hour == APPROVER_HOUR and day // 7 >= first_cycle_week:
                        self.approver_decides(hour_start)
                    if day == bad_day and hour == APPROVER_HOUR:
                        first = self.harmless_change(hour_start)  # back to back: a harmless change first
                        self.bad_change(hour_start + timedelta(minutes=1) if first else hour_start)
                    end = hour_start + timedelta(hours=1)
                    self.respond_until(end)
                    if cases is not None:
                        self.log_hour(day=day, hour=hour, cases=cases, now=end, rng=rng)
                    self.watchdog(end)
                if progress is not None and day < days:
                    progress(day)
        return self.table(weeks=(days + 6) // 7)

    def table(self, *, weeks: int) -> list[WeekRow]:
        last_moment = self.start + timedelta(weeks=weeks) - timedelta(seconds=1)
        metrics = weekly_metrics(agent=self.agent, weeks=weeks, now=last_moment)
        versions = list(ConfigVersion.objects.filter(agent=self.agent).order_by("number"))
        rows = []
        for w, m in enumerate(metrics):
            week_end = self.start + timedelta(weeks=w + 1)
            live = [v for v in versions if v.activated_at < week_end]
            values = {k: round(float(v), 4) for k, v in (live[-1].values if live else {}).items()}
            health, summary = self.health.get(w, (None, ""))
            rows.append(
                WeekRow(
                    week=w + 1,
                    metrics=m.as_dict(),
                    truth=self.truth.get(w, TruthCounts()),
                    thresholds=values,
                    health=health,
                    summary=summary,
                )
            )
        return rows


@compiled(Decision)
def _queued_between() -> QuerySet[Decision, Any]:
    """The ids of ``agent``'s queued decisions in [``lo``, ``hi``)."""
    time = Decision._meta.get_field("timestamp")
    return (
        Decision.objects.filter(
            agent_id=Param("agent", Decision._meta.get_field("agent")),
            timestamp__gte=Param("lo", time),
            timestamp__lt=Param("hi", time),
            queued=True,
        )
        .order_by()
        .values_list("entry_id")
    )


def simulate(
    *,
    scenario: Scenario,
    weeks: int,
    per_day: int,
    seed: int,
    start: date | None = None,
    agent_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Run one scenario. The same seed (and start) gives the same table."""
    start = monday_on_or_before(start) if start else default_start(weeks)
    agent_id = agent_id_free(agent_id, explicit=True) if agent_id else agent_id_free(f"sim-{scenario.name}-{seed}")
    world = World(scenario, seed)
    loop = Loop(scenario=scenario, agent_id=agent_id, start=start, seed=seed)
    rows = loop.run(days=weeks * 7, cases_for_day=lambda day: world.cases(day, per_day), progress=progress)
    return RunResult(
        agent_id=agent_id,
        scenario=scenario.name,
        seed=seed,
        per_day=per_day,
        weeks=weeks,
        start=start,
        rows=rows,
        events=loop.events,
    )
