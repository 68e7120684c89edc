"""Issue 10, item 4: a rule-based simulation with two loose rules on one action (``amount_rule`` and
``velocity_rule`` -> ``review``), run through the whole loop without any confidence (the agent leaves it out):
each rule moves on its own evidence, and every id a proposal cites is one its threshold gated."""

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from auditlog.models import Decision
from simulation.runner import simulate
from simulation.world import ThresholdSpec, scenario_get
from thresholds.models import ThresholdDefinition
from tuner.models import Proposal

pytestmark = pytest.mark.django_db

START = date(2026, 1, 5)


def two_loose_rules() -> Any:
    base = scenario_get("rules")
    amount, velocity, block = base.thresholds
    assert (amount.rule, velocity.rule) == ("high_amount", "high_velocity")
    loose_velocity: ThresholdSpec = replace(velocity, value=0.30)
    return replace(base, name="rules-two-loose", thresholds=(amount, loose_velocity, block))


def gated(decision: Decision, proposal: Proposal, definitions: dict[str, ThresholdDefinition]) -> bool:
    """Whether the threshold of ``proposal`` gated ``decision``: for a rise, a decision at its action whose matched
    rules hold its rule and no other rule of that action or a stronger one; for a fall, a pass one action below
    whose score for the rule lay in the band the fall brings in."""
    own = definitions[proposal.threshold_name]
    actions = ["allow", "review", "block"]
    rank = actions.index(own.action)
    rules = set(decision.matched_rules)
    if proposal.direction == "increase":
        others = {d.rule_name for d in definitions.values() if d.name != own.name and actions.index(d.action) >= rank}
        return decision.action == own.action and own.rule_name in rules and not rules & others
    score = float(decision.features[own.score_feature])
    low, high = sorted((proposal.current_value, proposal.proposed_value))
    return decision.action == actions[rank - 1] and low <= score < high


def test_rules__two_loose_rules_on_one_action__each_moves_on_its_own_evidence() -> None:
    result = simulate(scenario=two_loose_rules(), weeks=5, per_day=400, seed=1, start=START)
    definitions = {d.name: d for d in ThresholdDefinition.objects.filter(agent__agent_id=result.agent_id)}
    assert definitions["amount_rule"].rule == "high_amount"
    assert definitions["velocity_rule"].score_feature == "velocity_score"
    decisions = Decision.objects.filter(agent__agent_id=result.agent_id)
    assert decisions.exists() and not decisions.filter(confidence__isnull=False).exists()  # none sent one
    proposals = list(Proposal.objects.filter(agent__agent_id=result.agent_id).order_by("created_at", "pk"))
    moved = {p.threshold_name for p in proposals if p.status in ("accepted", "modified")}
    assert {"amount_rule", "velocity_rule"} <= moved, [
        (p.threshold_name, p.status, p.current_value, p.proposed_value, p.confidence, p.risk_flagged, p.impact)
        for p in proposals
    ]
    cited = 0
    for proposal in proposals:
        ids = list(proposal.sample_entry_ids)
        rows = {d.entry_id: d for d in decisions.filter(entry_id__in=ids)}
        assert set(rows) == set(ids)
        for entry_id in ids:
            assert gated(rows[entry_id], proposal, definitions), (proposal.threshold_name, entry_id)
            cited += 1
    assert cited >= 10
    # The two rules of one action were judged apart: their proposals moved them to different values.
    table = result.table()
    last = table[-1]["thresholds"]
    assert last["amount_rule"] > 0.40 and last["velocity_rule"] > 0.30
    assert last["amount_rule"] != last["velocity_rule"]
