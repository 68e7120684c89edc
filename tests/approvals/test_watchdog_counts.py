"""The watchdog's figures, pass after pass, against a recount made here from the rows themselves: responses that
come in late (some with a ``respondedAt`` before the previous pass), amendments that change a label either way,
and decisions logged late under an old timestamp all show in the very next pass."""

from datetime import datetime, timedelta
from typing import Any

import pytest

from approvals.models import VersionWatch
from approvals.services import proposal_decide
from approvals.watchdog import watchdog_run
from auditlog.labels import is_error
from auditlog.models import Decision
from auditlog.services import decision_log_batch, response_record
from tests.approvals.conftest import iso, log_responded
from tests.factories import NOW, entry, make_agent, make_proposal, user_with_role

CHANGED_AT = NOW - timedelta(days=3)


def _recount(agent: Any, lo: datetime, hi: datetime) -> tuple[int, int]:
    """(errors, responses) among the agent's decisions timestamped in [lo, hi), read row by row."""
    labels = Decision.objects.filter(agent=agent, timestamp__gte=lo, timestamp__lt=hi).values_list(
        "response_action", flat=True
    )
    answered = [a for a in labels if a is not None]
    return sum(1 for a in answered if is_error(a)), len(answered)


def _log_unanswered(agent: Any, *, prefix: str, n: int, start: datetime, now: datetime) -> list[str]:
    bodies: list[object] = [
        entry(agent.agent_id, id=f"{prefix}-{i:03d}", timestamp=iso(start + i * timedelta(minutes=5))) for i in range(n)
    ]
    results = decision_log_batch(entries=bodies, now=now)
    assert all(r.status == "created" for r in results)
    return [str(b["id"]) for b in bodies]  # type: ignore[index]


def _answer(agent: Any, entry_id: str, action: str, *, at: datetime, now: datetime, **extra: Any) -> Decision:
    raw = {"action": action, "respondedAt": iso(at)}
    return response_record(entry_id=entry_id, agent_id=agent.agent_id, raw=raw, responder_id="rita", now=now, **extra)


@pytest.mark.django_db
def test_watchdog_pass__responses_and_amendments_between_passes__figures_equal_a_recount() -> None:
    agent, _ = make_agent(now=NOW - timedelta(days=21))
    log_responded(agent, prefix="base", n=100, errors=30, start=CHANGED_AT - timedelta(days=10))
    approver = user_with_role("approver", username="alice")
    proposal = make_proposal(agent, proposed=0.7, now=CHANGED_AT - timedelta(hours=1))
    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="cluster", now=CHANGED_AT)
    answered = log_responded(agent, prefix="new", n=60, errors=18, start=CHANGED_AT + timedelta(hours=1))
    waiting = _log_unanswered(
        agent, prefix="late", n=30, start=CHANGED_AT + timedelta(hours=2), now=CHANGED_AT + timedelta(hours=5)
    )

    passes: list[tuple[datetime, Any]] = [
        # 1: first responses to ten waiting decisions, as reviewers send them
        (
            NOW - timedelta(hours=6),
            lambda now: [
                _answer(agent, e, "dismiss" if i % 3 == 0 else "approve", at=now - timedelta(minutes=30), now=now)
                for i, e in enumerate(waiting[:10])
            ],
        ),
        # 2: five more, sent with a respondedAt before the previous pass (an external tool syncing late)
        (
            NOW - timedelta(hours=5),
            lambda now: [_answer(agent, e, "escalate", at=now - timedelta(hours=3), now=now) for e in waiting[10:15]],
        ),
        # 3: amendments: two approvals made errors, one error made an approval, one baseline approval an error
        (
            NOW - timedelta(hours=4),
            lambda now: [
                _answer(agent, answered[1], "dismiss", at=now, now=now, amends=True, actor=approver),
                _answer(agent, answered[2], "escalate", at=now, now=now, amends=True, actor=approver),
                _answer(agent, waiting[0], "approve", at=now, now=now, amends=True, actor=approver),
                _answer(agent, "base-0000", "dismiss", at=now, now=now, amends=True, actor=approver),
            ],
        ),
        # 4: a decision logged late, with its response, timestamped inside the watched span; and more answers
        (
            NOW - timedelta(hours=3),
            lambda now: [
                decision_log_batch(
                    entries=[
                        entry(
                            agent.agent_id,
                            id="backfill-1",
                            timestamp=iso(CHANGED_AT + timedelta(hours=3)),
                            humanResponse={"action": "modify", "modifiedAction": "escalate", "respondedAt": iso(now)},
                        )
                    ],
                    now=now,
                ),
                *[_answer(agent, e, "approve", at=now, now=now) for e in waiting[15:25]],
            ],
        ),
        # 5: nothing new: the figures stay as they were
        (NOW - timedelta(hours=2), lambda now: []),
    ]
    watched: list[tuple[int, int, int, int]] = []
    for now, act in passes:
        act(now)
        assert watchdog_run(now=now, agent=agent) == []
        watch = VersionWatch.objects.get(agent=agent, version__number=2)
        figures = watch.assessment
        assert watch.state == VersionWatch.State.WATCHING, figures

        # The new side: from the change to now; the baseline: v1's responses in the two weeks before the change.
        new = _recount(agent, CHANGED_AT, now)
        base = _recount(agent, CHANGED_AT - timedelta(weeks=2), CHANGED_AT)
        shown = (figures["new_errors"], figures["new_responses"], figures["base_errors"], figures["base_responses"])
        assert shown == (*new, *base)
        watched.append(shown)

    # Every step moved the figures, except the last, which had nothing new.
    assert len(set(watched[:-1])) == 4 and watched[-1] == watched[-2]
