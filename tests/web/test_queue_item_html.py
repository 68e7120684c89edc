"""The queue's items are written in Python (``item_html``) for speed; they must read exactly as the template they
replaced, kept as ``tests/web/reference/queue_item.html``: same markup, same figures, same escaping."""

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.template import engines
from django.utils import timezone

from auditlog.models import Decision
from auditlog.selectors import QueueItem, features_ranked
from auditlog.views_queue import item_html

REFERENCE = Path(__file__).parent / "reference" / "queue_item.html"
CSRF = "tok3nTOK3ntok3nTOK3ntok3nTOK3ntok3nTOK3ntok3nTOK3ntok3nTOK3ntok3nTO"
ACTIONS = ["auto-resolve", "flag", "escalate"]


def _item(age: timedelta, *, binary: bool = False, amending: bool = False, **fields: Any) -> QueueItem:
    values: dict[str, Any] = {
        "entry_id": "e-1",
        "action": "flag",
        "confidence": 0.725,
        "threshold_used": 0.6,
        "threshold_name": "flag_threshold",
        "reasoning": "amount far above the customer's average",
        "features": {"amount_z": 3.2, "night": 1.0},
        "matched_rules": ["high_amount"],
        "timestamp": timezone.now() - age,
        **fields,
    }
    decision = Decision(**values)
    return QueueItem(
        decision=decision,
        agent_id="triage",
        actions=ACTIONS,
        binary_mode=binary,
        age=age,
        features=features_ranked(decision.features or {}),
        claimed_by_me=False,
        amending=amending,
    )


MINUTES = timedelta(hours=2, minutes=5, seconds=30)
CASES: dict[str, Any] = {
    "plain": lambda: _item(MINUTES),
    "binary": lambda: _item(MINUTES, binary=True),
    "amending, modified": lambda: _item(MINUTES, amending=True, response_action="modify", modified_action="escalate"),
    "amending, plain answer": lambda: _item(MINUTES, amending=True, response_action="dismiss"),
    "rule-based, rules fired": lambda: _item(MINUTES, confidence=None, matched_rules=["velocity", "<night>"]),
    "rule-based, no rule": lambda: _item(MINUTES, confidence=None, matched_rules=[]),
    "below threshold, no reasoning": lambda: _item(MINUTES, confidence=0.3, reasoning=""),
    "rounding half up and negative zero": lambda: _item(
        MINUTES,
        confidence=0.615,
        threshold_used=0.125,
        features={"a": 0.0005, "b": -0.0004, "c": 2.0625, "d": -1.5, "e": 7, "f": 1e-7},
    ),
    "more than eight features, markup in names": lambda: _item(
        MINUTES,
        features={f"f{i}<&\"'>": i / 7 for i in range(12)},
        reasoning='<script>alert("x")</script> & more',
        entry_id='id"&<x>',
    ),
    "escalated, strongest action": lambda: _item(MINUTES, action="escalate", confidence=0.91, threshold_used=0.85),
    "weeks old": lambda: _item(timedelta(days=20, hours=3, minutes=1, seconds=10)),
    "months old": lambda: _item(timedelta(days=75, hours=1, seconds=10)),
    "a month and days old": lambda: _item(timedelta(days=33, hours=5, minutes=2, seconds=40)),
    "over a year old": lambda: _item(timedelta(days=400, minutes=7, seconds=40)),
    "logged in the future": lambda: _item(-timedelta(minutes=3)),
    "seconds old": lambda: _item(timedelta(seconds=20)),
}


@pytest.mark.parametrize("case", CASES)
def test_item_html__reads_as_the_template_it_replaced(case: str) -> None:
    item = CASES[case]()
    reference = engines["django"].from_string(REFERENCE.read_text())

    expected = reference.render({"item": item, "csrf_token": CSRF})
    shown = item_html(
        item,
        respond_url="/queue/respond/",
        csrf_input=f'<input type="hidden" name="csrfmiddlewaretoken" value="{CSRF}">',
        now=timezone.now(),
    )

    assert shown == expected
