"""Phase 3: two proposal generators behind one interface.

The statistical generator replays the window under candidate values (offline, deterministic). The Claude generator
asks the model for the seed's output format and trusts none of it: every proposal is validated against the window
and replayed before it becomes a candidate. Any failure of the model (transport error, timeout, an error status, a
body that is not JSON, a wrong shape, a refusal, an empty or cut-off answer) never fails the cycle: the statistical
candidates are used and the run says why.
"""

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError

from thresholds.models import Agent, ThresholdDefinition
from tuner.analysis import (
    Candidate,
    Choice,
    Objective,
    Reference,
    ReplayData,
    choose,
    choose_value,
    impact_numbers,
    impact_score,
    impact_text,
    miss_rules_problem,
    risk_text,
)
from tuner.selectors import Window, entries_gated, entries_in_window, evidence_entries

logger = logging.getLogger(__name__)

SAMPLE_IDS = 10
PROMPT_PATH = Path(__file__).with_name("prompts") / "tuner-system.txt"


@dataclass
class GenerationContext:
    agent: Agent
    window: Window
    definitions: dict[str, ThresholdDefinition]
    live: dict[str, float]
    replay: dict[str, ReplayData]
    objective: Objective
    max_move: float
    min_evidence: int
    clusters: list[dict[str, Any]] = field(default_factory=list)  # empty for a generator that does not read them
    weekly_trends: list[dict[str, Any]] = field(default_factory=list)
    constraints: list[dict[str, Any]] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)  # threshold -> why no proposal this cycle
    # threshold -> the values it may take this cycle (approvals.guard.allowed_range: rule 3 and its bounds)
    allowed: dict[str, tuple[float, float]] = field(default_factory=dict)
    # threshold -> its misses in the agent's reference period (contract rule 10)
    references: dict[str, Reference] = field(default_factory=dict)

    def allowed_range(self, name: str) -> tuple[float, float]:
        if name in self.allowed:
            return self.allowed[name]
        d, value = self.definitions[name], self.live.get(name, 0.0)
        return max(d.min_value, value * (1 - self.max_move)), min(d.max_value, value * (1 + self.max_move))


@dataclass
class Generated:
    candidates: list[Candidate]
    generator: str
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    prompt_hash: str = ""
    held: list[str] = field(default_factory=list)  # rises the miss budget stopped, for the summary


class Generator(Protocol):
    """Makes candidates from a cycle's context. A generator whose class says ``reads_clusters = False`` is given
    a context without the clusters (they are found while it runs: ``tuner.services.cycle_compute``); one that does
    not say is given them."""

    name: str

    def generate(self, ctx: GenerationContext) -> Generated: ...


def _candidate(ctx: GenerationContext, name: str, choice: Choice, *, cited: list[str] | None = None) -> Candidate:
    """A replayed candidate with its evidence counted in the database: the decisions the move affects."""
    definition = ctx.definitions[name]
    current = ctx.live[name]
    kind = "dismiss" if choice.direction == "increase" else "escalate"
    low, high = sorted((current, choice.value))
    count, ids = evidence_entries(
        agent=ctx.agent,
        window=ctx.window,
        definition=definition,
        kind=kind,
        low=low,
        high=high,
        limit=SAMPLE_IDS,
        definitions=ctx.definitions,
    )
    allowed_min, allowed_max = ctx.allowed_range(name)
    return Candidate(
        threshold_name=name,
        current_value=current,
        proposed_value=choice.value,
        direction=choice.direction,
        confidence=choice.confidence,
        expected_impact=impact_text(choice),
        evidence_count=count,
        sample_entry_ids=cited if cited is not None else ids,
        risk_assessment=risk_text(choice),
        risk_flagged=choice.risk_flagged,
        score=impact_score(choice, ctx.objective.miss_cost),
        min_value=definition.min_value,
        max_value=definition.max_value,
        evidence_kind=kind,
        impact=impact_numbers(choice),
        allowed_min=allowed_min,
        allowed_max=allowed_max,
    )


class StatisticalGenerator:
    name = "statistical"
    reads_clusters = False  # the replay alone; the clusters go to the approver, not into the choice

    def generate(self, ctx: GenerationContext) -> Generated:
        out: list[Candidate] = []
        held: list[str] = []
        for name in sorted(ctx.definitions):
            if name in ctx.excluded or name not in ctx.replay or name not in ctx.live:
                continue
            definition = ctx.definitions[name]
            chosen = choose(
                ctx.replay[name],
                current=ctx.live[name],
                lo=definition.min_value,
                hi=definition.max_value,
                objective=ctx.objective,
                max_move=ctx.max_move,
                allowed=ctx.allowed_range(name),
                reference=ctx.references.get(name),
            )
            if chosen.held is not None:
                held.append(chosen.held.text(name))
            if chosen.choice is not None:
                out.append(_candidate(ctx, name, chosen.choice))
        return Generated(out, self.name, held=held)


# ------------------------------------------------------------------------------------------------ Claude

PROPOSAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "proposals": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "thresholdName": {"type": "string"},
                    "currentValue": {"type": "number"},
                    "proposedValue": {"type": "number"},
                    "direction": {"type": "string", "enum": ["increase", "decrease"]},
                    "confidence": {"type": "string", "enum": ["low", "medium", "high"]},
                    "expectedImpact": {"type": "string"},
                    "evidenceCount": {"type": "integer"},
                    "sampleEntryIds": {"type": "array", "items": {"type": "string"}},
                    "riskAssessment": {"type": "string"},
                },
                "required": [
                    "thresholdName",
                    "currentValue",
                    "proposedValue",
                    "direction",
                    "confidence",
                    "expectedImpact",
                    "evidenceCount",
                    "sampleEntryIds",
                    "riskAssessment",
                ],
            },
        },
        "summary": {"type": "string"},
        "systemHealth": {"type": "string", "enum": ["baseline", "healthy", "needs-attention", "degraded"]},
    },
    "required": ["proposals", "summary", "systemHealth"],
}
TOOL_NAME = "emit_tuner_output"


class GeneratorOutputError(Exception):
    """The model's answer is not the output format at all."""


def system_prompt() -> str:
    return PROMPT_PATH.read_text(encoding="utf-8")


_PLAIN = re.compile(r"^[A-Za-z0-9_.:@/+-]{1,128}$")


def _plain(value: Any) -> str | None:
    """An agent-supplied name or id, only when it is a plain identifier (no spaces, no sentences)."""
    return value if isinstance(value, str) and _PLAIN.match(value) else None


def _cluster_for_prompt(cluster: dict[str, Any]) -> dict[str, Any]:
    features = [
        {"feature": _plain(f["feature"]) or "(unnamed)", "effect": f["effect"]}
        for f in cluster["distinguishingFeatures"]
    ]
    return {
        "kind": cluster["kind"],
        "size": cluster["size"],
        "share": cluster["share"],
        "thresholds": cluster["thresholds"],
        "confidenceRange": cluster["confidenceRange"],
        "distinguishingFeatures": features,
        "rules": [r for r in (_plain(x) for x in cluster["rules"]) if r],
        "sampleEntryIds": [i for i in (_plain(x) for x in cluster["sampleEntryIds"]) if i],
    }


def _budget_for_prompt(reference: Reference, objective: Objective) -> dict[str, Any]:
    return {
        "reference": reference.label,
        "referenceMissRate": round(reference.rate, 4),
        "allowedMissRate": round(reference.allowed_rate(objective), 4),
    }


def prompt_payload(ctx: GenerationContext) -> dict[str, Any]:
    """What the model sees: numbers, clusters (with sample ids to cite) and constraints. Agents' free text
    (reasoning) never goes in, and their feature names, rule names and ids only when they are plain identifiers,
    so a decision cannot speak to the tuner."""
    return {
        "agentId": ctx.agent.agent_id,
        "actionsWeakestFirst": list(ctx.agent.actions),
        "window": {"from": ctx.window.start.isoformat(), "to": ctx.window.end.isoformat()},
        "currentThresholds": [
            {
                "name": name,
                "action": d.action,
                "value": ctx.live.get(name),
                "min": d.min_value,
                "max": d.max_value,
                "allowedRange": [round(v, 6) for v in ctx.allowed_range(name)],
                **(
                    {"missBudget": _budget_for_prompt(ctx.references[name], ctx.objective)}
                    if name in ctx.references
                    else {}
                ),
                **({"noProposalThisCycle": ctx.excluded[name]} if name in ctx.excluded else {}),
            }
            for name, d in sorted(ctx.definitions.items())
        ],
        "dismissalClusters": [_cluster_for_prompt(c) for c in ctx.clusters if c["kind"] == "dismiss"],
        "escalationClusters": [_cluster_for_prompt(c) for c in ctx.clusters if c["kind"] == "escalate"],
        "weeklyTrends": ctx.weekly_trends,
        "approverConstraints": ctx.constraints,
    }


def _parse_answer(message: Any) -> dict[str, Any]:
    """The tool input of the model's answer (or a JSON object in its text); GeneratorOutputError says why there is
    none."""
    if not hasattr(message, "content"):
        # The SDK hands a body that is not a message back as it is (a text body, a JSON list).
        raise GeneratorOutputError(f"the answer is not a message but {type(message).__name__}")
    stop = getattr(message, "stop_reason", None)
    if stop == "refusal":
        details = getattr(message, "stop_details", None)
        parts = (getattr(details, "category", None), getattr(details, "explanation", None))
        why = "; ".join(str(part) for part in parts if part)
        raise GeneratorOutputError(f"the model refused to answer (stop_reason 'refusal'{f': {why}' if why else ''})")
    content = message.content
    if not isinstance(content, list):
        raise GeneratorOutputError(f"the answer's content is not a list but {type(content).__name__}")
    if not content:
        raise GeneratorOutputError(f"the answer is empty (no content, stop_reason {stop!r})")
    if stop in ("max_tokens", "model_context_window_exceeded"):
        raise GeneratorOutputError(f"the answer was cut off (stop_reason {stop!r})")
    for block in content:
        if getattr(block, "type", None) == "tool_use" and isinstance(getattr(block, "input", None), dict):
            return dict(block.input)
    text = "".join(t for t in (getattr(b, "text", None) for b in content) if isinstance(t, str))
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise GeneratorOutputError("the model answered in prose, not the output format")
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise GeneratorOutputError(f"the model's JSON does not parse: {exc.msg}") from None
    if not isinstance(data, dict):
        raise GeneratorOutputError("the model's answer is not an object")
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def validate_model_proposal(ctx: GenerationContext, raw: Any) -> tuple[Candidate | None, str]:
    """One proposal of the model checked against the window; returns (candidate, '') or (None, why)."""
    if not isinstance(raw, dict):
        return None, "not an object"
    required = PROPOSAL_SCHEMA["properties"]["proposals"]["items"]["required"]
    missing = [key for key in required if key not in raw]
    if missing:
        return None, f"{raw.get('thresholdName')!r}: missing {', '.join(missing)}"
    kinds = {"expectedImpact": str, "riskAssessment": str, "evidenceCount": int}
    wrong = [key for key, kind in kinds.items() if not isinstance(raw[key], kind) or isinstance(raw[key], bool)]
    if wrong or _number(raw["currentValue"]) is None:
        return None, f"{raw.get('thresholdName')!r}: wrong type for {', '.join(wrong or ['currentValue'])}"
    name = raw.get("thresholdName")
    if not isinstance(name, str) or name not in ctx.definitions:
        return None, f"unknown threshold {name!r}"
    if name in ctx.excluded:
        return None, f"{name}: {ctx.excluded[name]}"
    proposed = _number(raw.get("proposedValue"))
    if proposed is None:
        return None, f"{name}: proposedValue is not a finite number"
    definition, current = ctx.definitions[name], ctx.live[name]
    direction = raw.get("direction")
    if direction not in ("increase", "decrease") or (proposed > current) != (direction == "increase"):
        return None, f"{name}: direction {direction!r} does not match {current} -> {proposed}"
    if raw.get("confidence") not in ("low", "medium", "high"):
        return None, f"{name}: confidence {raw.get('confidence')!r} is not low/medium/high"
    if not definition.min_value <= proposed <= definition.max_value:
        return None, f"{name}: {proposed} is outside the bounds [{definition.min_value}, {definition.max_value}]"
    allowed_low, allowed_high = ctx.allowed_range(name)
    if not allowed_low - 1e-9 <= proposed <= allowed_high + 1e-9:
        return None, f"{name}: {proposed} is outside the range allowed this cycle [{allowed_low:g}, {allowed_high:g}]"
    ids = raw.get("sampleEntryIds")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return None, f"{name}: sampleEntryIds is not a list of ids"
    ids = list(dict.fromkeys(ids))
    kind = "dismiss" if direction == "increase" else "escalate"
    actions = list(ctx.agent.actions)
    rank = actions.index(definition.action)
    expected_action = definition.action if kind == "dismiss" else actions[max(0, rank - 1)]
    found = entries_in_window(agent=ctx.agent, window=ctx.window, entry_ids=ids)
    bad = [i for i in ids if i not in found or found[i]["label"] != kind or found[i]["action"] != expected_action]
    if bad:
        return None, (
            f"{name}: {len(bad)} cited id(s) are not {kind}s at {expected_action} in the window (e.g. {bad[0]!r})"
        )
    if ctx.agent.rule_based:
        # A rule is judged on its own hits: every cited entry must be one its threshold gated (its rule fired
        # alone) or, for a decrease, a pass whose score for the rule lies in the band the move brings in.
        low, high = sorted((current, proposed))
        gated = entries_gated(
            agent=ctx.agent, window=ctx.window, definition=definition, kind=kind, low=low, high=high, entry_ids=ids
        )
        stray = [i for i in ids if i not in gated]
        if stray:
            return None, (
                f"{name}: {len(stray)} cited id(s) were not gated by its rule {definition.rule_name!r} between "
                f"{current} and {proposed} (e.g. {stray[0]!r})"
            )
    if len(ids) < ctx.min_evidence:
        return None, f"{name}: cites {len(ids)} entries, fewer than {ctx.min_evidence}"
    choice = choose_value(
        ctx.replay[name],
        current=current,
        lo=definition.min_value,
        hi=definition.max_value,
        objective=ctx.objective,
        max_move=ctx.max_move,
        fixed_value=proposed,
        reference=ctx.references.get(name),
    )
    if choice is None:
        return None, f"{name}: {proposed} replays the same as the current value"
    problem = miss_rules_problem(choice, ctx.objective)
    if problem:
        return None, f"{name}: {current} -> {proposed} breaks the miss rules: {problem}"
    candidate = _candidate(ctx, name, choice, cited=ids)
    if candidate.evidence_count < ctx.min_evidence:
        return None, (
            f"{name}: the database holds {candidate.evidence_count} {kind}(s) between {current} and {proposed}, "
            f"fewer than {ctx.min_evidence} (the model claimed {raw.get('evidenceCount')!r})"
        )
    # The model's confidence can only be lowered by the replay, never raised.
    claimed = str(raw["confidence"])
    order = {"low": 0, "medium": 1, "high": 2}
    candidate.confidence = min(claimed, choice.confidence, key=lambda c: order[c])
    model_risk = raw.get("riskAssessment")
    if isinstance(model_risk, str) and model_risk.strip():
        candidate.risk_assessment = f"{candidate.risk_assessment} Analyst: {model_risk.strip()[:500]}"
    return candidate, ""


class ClaudeGenerator:
    name = "claude"
    reads_clusters = True  # the prompt shows them

    def __init__(self, client: Any = None, fallback: Generator | None = None) -> None:
        self._client = client
        self.fallback = fallback or StatisticalGenerator()

    def client(self) -> Any:
        if self._client is None:
            import anthropic

            self._client = anthropic.Anthropic(
                api_key=settings.ANTHROPIC_API_KEY, timeout=settings.TUNER_LLM_TIMEOUT, max_retries=1
            )
        return self._client

    def generate(self, ctx: GenerationContext) -> Generated:
        system = system_prompt()
        payload = json.dumps(prompt_payload(ctx), sort_keys=True, default=str)
        prompt_hash = hashlib.sha256(f"{system}\n{payload}".encode()).hexdigest()
        try:
            message = self.client().messages.create(
                model=settings.TUNER_MODEL,
                max_tokens=4096,
                system=system,
                messages=[{"role": "user", "content": payload}],
                tools=[
                    {
                        "name": TOOL_NAME,
                        "description": "Emit this cycle's proposals in the tuner output format.",
                        "input_schema": PROPOSAL_SCHEMA,
                    }
                ],
                tool_choice={"type": "tool", "name": TOOL_NAME},
                timeout=settings.TUNER_LLM_TIMEOUT,
            )
            answer = _parse_answer(message)
            raw_proposals = answer.get("proposals")
            if not isinstance(raw_proposals, list):
                raise GeneratorOutputError("the answer has no proposals list")
        except SoftTimeLimitExceeded:
            raise  # the worker's time limit, not the model: the cycle stops
        except Exception as exc:  # noqa: BLE001 - no failure of the model may fail the cycle
            kind = _failure(exc)
            logger.warning(
                "tuner.llm_failed",
                extra={"agent_id": ctx.agent.agent_id, "error": f"{type(exc).__name__}: {exc}"[:500]},
                exc_info=kind == "failed unexpectedly",
            )
            fallback = self.fallback.generate(ctx)
            fallback.notes.insert(0, f"Claude {kind} ({str(exc)[:300]}); the statistical proposals are used instead.")
            fallback.errors.append(f"claude: {type(exc).__name__}: {exc}"[:500])
            fallback.prompt_hash = prompt_hash
            return fallback
        out: list[Candidate] = []
        notes: list[str] = []
        for raw in raw_proposals[:10]:
            try:
                candidate, why = validate_model_proposal(ctx, raw)
            except DatabaseError:
                raise
            except Exception as exc:  # noqa: BLE001 - a proposal that cannot be checked is dropped, not the cycle
                logger.warning("tuner.llm_proposal_unchecked", extra={"agent_id": ctx.agent.agent_id}, exc_info=True)
                candidate, why = None, f"it could not be checked ({type(exc).__name__}: {str(exc)[:200]})"
            if candidate is None:
                notes.append(f"dropped a model proposal: {why}")
            else:
                out.append(candidate)
        return Generated(out, self.name, notes=notes, prompt_hash=prompt_hash)


def _failure(exc: Exception) -> str:
    """How the model failed, for the run's notes ("Claude <this> (<the error>)")."""
    import anthropic

    if isinstance(exc, anthropic.APITimeoutError):
        return "timed out"
    if isinstance(exc, anthropic.APIConnectionError):
        return "could not be reached"
    if isinstance(exc, anthropic.APIStatusError):
        return f"answered HTTP {exc.status_code}"
    if isinstance(exc, json.JSONDecodeError):
        return "sent a body that is not JSON"
    if isinstance(exc, anthropic.APIError | GeneratorOutputError):
        return "failed"
    return "failed unexpectedly"


def default_generator() -> Generator:
    return ClaudeGenerator() if settings.ANTHROPIC_API_KEY else StatisticalGenerator()
