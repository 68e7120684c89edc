"""What a response means for tuning and for the watchdog (contract, "Human response"), pinned at each edge."""

import pytest

from auditlog.labels import binary_meaning, binary_response, effective_label, is_error

ACTIONS = ("allow", "review", "block")


@pytest.mark.parametrize("action", ["approve", "dismiss", "escalate"])
def test_effective_label__not_a_modify__is_the_response_itself(action: str) -> None:
    assert effective_label(action, None, "review", ACTIONS) == action
    assert effective_label(action, "block", "review", ACTIONS) == action


def test_effective_label__no_response__none() -> None:
    assert effective_label(None, None, "review", ACTIONS) is None
    assert effective_label(None, "block", "review", ACTIONS) is None


@pytest.mark.parametrize(
    ("modified", "taken", "expected"),
    [
        ("block", "review", "escalate"),  # one step stronger
        ("block", "allow", "escalate"),
        ("allow", "review", "dismiss"),  # one step weaker
        ("allow", "block", "dismiss"),
        ("review", "review", "approve"),  # the same action: the agent was right
        ("allow", "allow", "approve"),
    ],
)
def test_effective_label__modify__stronger_escalates_weaker_dismisses_same_approves(
    modified: str, taken: str, expected: str
) -> None:
    assert effective_label("modify", modified, taken, ACTIONS) == expected
    assert effective_label("modify", modified, taken, list(ACTIONS)) == expected


@pytest.mark.parametrize(
    ("modified", "taken"),
    [(None, "review"), ("unknown", "review"), ("block", "unknown"), ("unknown", "unknown")],
)
def test_effective_label__modify_to_an_action_outside_the_agents__dismiss(modified: str | None, taken: str) -> None:
    assert effective_label("modify", modified, taken, ACTIONS) == "dismiss"


@pytest.mark.parametrize(
    ("action", "expected"),
    [("approve", False), ("dismiss", True), ("escalate", True), ("modify", True), (None, False)],
)
def test_is_error__each_response__only_approve_and_none_are_not(action: str | None, expected: bool) -> None:
    assert is_error(action) is expected


@pytest.mark.parametrize(
    ("thumb", "taken", "expected"),
    [
        ("up", "allow", "approve"),
        ("up", "block", "approve"),
        ("down", "allow", "escalate"),  # the weakest action, sampled: it should have acted
        ("down", "review", "dismiss"),  # fired: it should not have
        ("down", "block", "dismiss"),
    ],
)
def test_binary_response__each_thumb__records_its_response(thumb: str, taken: str, expected: str) -> None:
    assert binary_response(thumb, taken_action=taken, actions=ACTIONS) == expected


@pytest.mark.parametrize("thumb", ["", "UP", "sideways", "upp"])
def test_binary_response__not_up_or_down__refused(thumb: str) -> None:
    with pytest.raises(ValueError, match=f"thumb must be up or down, not {thumb!r}"):
        binary_response(thumb, taken_action="review", actions=ACTIONS)


@pytest.mark.parametrize(
    ("thumb", "taken", "expected"),
    [
        ("up", "allow", "thumbs up: the agent was right → approve"),
        ("up", "block", "thumbs up: the agent was right → approve"),
        ("down", "allow", "thumbs down: should have acted → escalate"),
        ("down", "block", "thumbs down: should not have fired → dismiss"),
    ],
)
def test_binary_meaning__each_thumb__says_what_was_recorded(thumb: str, taken: str, expected: str) -> None:
    assert binary_meaning(thumb, taken_action=taken, actions=ACTIONS) == expected
