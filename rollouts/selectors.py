"""Reads: what a proposal's shadow saw on live traffic, and a proposal's canary with its two arms."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min

from auditlog.labels import effective_label
from auditlog.models import Decision
from rollouts.arms import in_canary
from rollouts.models import Canary
from tuner.models import Proposal

# A client may decide with a shadow a little before the proposal's row says it was made (clocks differ); the
# bound only spares the partitions of older weeks.
CLOCK_SLACK = timedelta(hours=1)


@dataclass
class ShadowGroup:
    """Decisions the candidate would have decided otherwise, by (taken, would take), with the reviewers' verdicts."""

    taken: str
    would_take: str
    stronger: bool  # the candidate would have acted more strongly than the agent did
    count: int = 0
    labels: dict[str, int] = field(default_factory=lambda: {"approve": 0, "dismiss": 0, "escalate": 0})
    open: int = 0  # queued, not answered yet
    unreviewed: int = 0  # not queued for review

    @property
    def candidate_right(self) -> int:
        """Reviewers sided with the candidate: escalated what it would have raised, dismissed what it would drop."""
        return self.labels["escalate"] if self.stronger else self.labels["dismiss"]

    @property
    def candidate_wrong(self) -> int:
        return sum(self.labels.values()) - self.candidate_right

    def sentence(self) -> str:
        verdicts = [
            f"dismissed {self.labels['dismiss']:,}" if self.labels["dismiss"] else "",
            f"confirmed {self.labels['approve']:,}" if self.labels["approve"] else "",
            f"escalated {self.labels['escalate']:,}" if self.labels["escalate"] else "",
            f"{self.open:,} open" if self.open else "",
            f"{self.unreviewed:,} not queued for review" if self.unreviewed else "",
        ]
        said = ", ".join(v for v in verdicts if v) or "none reviewed yet"
        decisions = "decision" if self.count == 1 else "decisions"
        return f"{self.count:,} {decisions} taken as {self.taken} would have been {self.would_take}; reviewers {said}"

    def as_json(self) -> dict[str, Any]:
        return {
            "taken": self.taken,
            "wouldTake": self.would_take,
            "stronger": self.stronger,
            "count": self.count,
            "dismissed": self.labels["dismiss"],
            "confirmed": self.labels["approve"],
            "escalated": self.labels["escalate"],
            "open": self.open,
            "notQueued": self.unreviewed,
            "candidateRight": self.candidate_right,
            "candidateWrong": self.candidate_wrong,
        }


@dataclass
class ShadowEvidence:
    """What the proposal's candidate value would have done on live traffic while it ran in shadow."""

    proposal_id: int
    decisions: int  # decisions logged with this proposal's shadow action
    first_at: datetime | None
    last_at: datetime | None
    groups: list[ShadowGroup]

    @property
    def changed(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def days(self) -> float:
        if self.first_at is None or self.last_at is None:
            return 0.0
        return (self.last_at - self.first_at).total_seconds() / 86400

    def summary(self) -> str:
        """The evidence in plain sentences, for the proposal's page."""
        if not self.decisions:
            return (
                "No decision has been logged with this proposal's shadow yet: agents that use the loopsite client "
                "add it to every decision while the proposal is pending."
            )
        span = f"{self.days:.1f} days" if self.days >= 1 else "less than a day"
        lead = (
            f"Over {span} in shadow the candidate value saw {self.decisions:,} live decisions and would have "
            f"decided {self.changed:,} of them differently."
        )
        return " ".join([lead, *(g.sentence() + "." for g in self.groups)])

    def as_json(self) -> dict[str, Any]:
        return {
            "proposalId": self.proposal_id,
            "decisions": self.decisions,
            "changed": self.changed,
            "days": round(self.days, 2),
            "firstAt": self.first_at.isoformat() if self.first_at else None,
            "lastAt": self.last_at.isoformat() if self.last_at else None,
            "groups": [g.as_json() for g in self.groups],
            "summary": self.summary(),
        }


def shadow_evidence(*, proposal: Proposal) -> ShadowEvidence:
    """Count the decisions logged with ``proposal``'s shadow: how many, and among those the candidate would have
    decided otherwise, the reviewers' verdicts. Two aggregate queries over the agent's weeks since the proposal."""
    agent = proposal.agent
    actions = list(agent.actions)
    rank = {a: i for i, a in enumerate(actions)}
    mine = Decision.objects.filter(
        agent=agent, timestamp__gte=proposal.created_at - CLOCK_SLACK, shadow_proposal_id=proposal.pk
    ).order_by()
    span = mine.aggregate(n=Count("seq"), first=Min("timestamp"), last=Max("timestamp"))
    rows = (
        mine.exclude(shadow_action=None)
        .values_list("action", "shadow_action", "queued", "response_action", "modified_action")
        .annotate(n=Count("seq"))
    )
    groups: dict[tuple[str, str], ShadowGroup] = {}
    for taken, would, queued, response, modified, n in rows:
        if taken == would:
            continue
        key = (taken, would)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ShadowGroup(taken, would, rank.get(would, 0) > rank.get(taken, 0))
        group.count += n
        label = effective_label(response, modified, taken, actions)
        if label is not None:
            group.labels[label] += n
        elif queued:
            group.open += n
        else:
            group.unreviewed += n
    ordered = sorted(groups.values(), key=lambda g: (-g.count, g.taken, g.would_take))
    return ShadowEvidence(
        proposal_id=proposal.pk,
        decisions=int(span["n"] or 0),
        first_at=span["first"],
        last_at=span["last"],
        groups=ordered,
    )


@dataclass(frozen=True)
class ArmSize:
    decisions: int
    sessions: int
    off_arm: int  # sessions whose hash puts them in the other arm: an agent that ignores the canary, or a bug


def canary_arm_sizes(*, canary: Canary, now: datetime) -> dict[str, ArmSize]:
    """Each arm's decisions and sessions since the canary started, and how many sessions the shared hash
    (``rollouts.arms.in_canary``) puts in the other arm than the one their entries name: the server's accounting
    of the rule the client applies."""
    sizes: dict[str, ArmSize] = {}
    version = canary.version.number
    for arm, version_pk, expected in (("canary", canary.version_id, True), ("control", canary.control_id, False)):
        rows = (
            Decision.objects.filter(
                agent_id=canary.agent_id,
                timestamp__gte=canary.started_at,
                timestamp__lt=min(now, canary.ended_at or now),
                config_version_id=version_pk,
            )
            .order_by()
            .values_list("session_id")
            .annotate(n=Count("seq"))
        )
        decisions = sessions = off = 0
        for session_id, n in rows:
            decisions += n
            sessions += 1
            if in_canary(session_id, share=canary.share, version=version) != expected:
                off += 1
        sizes[arm] = ArmSize(decisions, sessions, off)
    return sizes


def canary_of(*, proposal: Proposal) -> Canary | None:
    """The proposal's canary, the newest when it had more than one."""
    return (
        Canary.objects.filter(proposal=proposal)
        .select_related("agent", "version", "control", "result", "started_by", "ended_by")
        .order_by("-started_at", "-pk")
        .first()
    )


def canary_summary(canary: Canary) -> str:
    """The canary's state and its last assessment in plain sentences, for its page, the API and the emails."""
    from approvals.watchdog import Assessment

    arm = f"v{canary.version.number}, {canary.share:.0%} of sessions"
    control = f"v{canary.control.number}"
    a = Assessment.from_dict(canary.assessment) if canary.assessment else None
    if a is None or a.verdict == "waiting":
        have = f"{a.new_responses} of the {a.min_responses}" if a is not None else "None of the"
        figures = f"{have} reviewer responses needed in the canary arm have come in. Nothing is judged before then."
    elif a.verdict == "no_baseline" or a.new_rate is None or a.base_rate is None or a.limit_rate is None:
        figures = "The control arm has no responses yet over the same days, so there is nothing to compare with."
    else:
        figures = (
            f"Over the same days reviewers found an error in {a.new_rate:.1%} of the canary arm's decisions "
            f"({a.new_errors} of {a.new_responses} responses) against {a.base_rate:.1%} in the control arm "
            f"({a.base_errors} of {a.base_responses}); the rule tolerates up to {a.limit_rate:.1%}."
        )
    state = {
        Canary.State.RUNNING: f"The canary ({arm}) runs until {canary.ends_at:%Y-%m-%d %H:%M} UTC; the other "
        f"sessions stay on {control}. The watchdog promotes it when it is not worse and aborts it at once when "
        "it is.",
        Canary.State.INCONCLUSIVE: f"The canary ({arm}) ran out of time without a verdict and keeps serving "
        "until an approver promotes or aborts it.",
        Canary.State.PROMOTED: f"The canary ({arm}) was promoted by {canary.ended_label}: its value is live for "
        "every session.",
        Canary.State.ABORTED: f"The canary ({arm}) was aborted by {canary.ended_label}: every session is back on "
        "the earlier value.",
    }[Canary.State(canary.state)]
    return f"{state} {figures}"
