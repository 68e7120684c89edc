"""Parsing and checking one ActionLogEntry (the seed's shape) into plain values. Pure: no database.

Every refusal raises ``InvalidEntry`` naming the field (dotted, camelCase as sent).
"""

import functools
import hashlib
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from auditlog.exceptions import InvalidEntry
from loopsite.input_checks import text_problem

MAX_FEATURES = 200
MAX_RULES = 100
MAX_TEXT = 4000
MAX_ID = 128
MAX_FUTURE = timedelta(minutes=5)
MAX_TIME_TO_RESPOND = 10 * 365.25 * 86400.0
RESPONSE_ACTIONS = ("approve", "dismiss", "modify", "escalate")


@dataclass(frozen=True)
class ResponseInput:
    action: str
    responded_at: datetime
    responder_id: str
    modified_action: str | None = None
    note: str | None = None
    time_to_respond: float | None = None


@dataclass(slots=True)
class EntryInput:
    """One checked entry. Never changed once made, but not frozen: a frozen dataclass sets each of these fields
    through ``object.__setattr__``, which doubles the cost of making one, 3 % of a batch's time."""

    id: str
    id_given: bool
    timestamp: datetime
    agent_id: str
    session_id: str
    action: str
    confidence: float | None  # None only from a rule-based agent (checked where the agent is known)
    threshold_used: float
    reasoning: str
    threshold_name: str | None
    input_hash: str
    features: dict[str, float]
    matched_rules: list[str]
    human_response: ResponseInput | None = None
    config_version: int | None = None  # the version the agent decided under, when it says so
    # What the pending proposal's shadow values would have done (decision.shadowAction), and which proposal's.
    shadow_action: str | None = None
    shadow_proposal_id: int | None = None
    content_hash: str = field(default="", compare=False)
    # ``features`` as JSON with sorted keys, made once for the content hash and the stored row.
    features_json: bytes = field(default=b"", compare=False)


def _plain(value: str) -> bool:
    """ASCII without NUL: storable for sure (``str.isascii`` is a flag read), so ``text_problem`` need not look."""
    return value.isascii() and "\x00" not in value


def _obj(raw: Any, name: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidEntry(f"{name} must be an object", field=name)
    return raw


def _str(obj: dict[str, Any], key: str, name: str, *, required: bool = True, limit: int = 200) -> str | None:
    value = obj.get(key)
    # The usual value passes every check below at once; anything else goes through them one by one, for the
    # message that names what is wrong.
    if (
        type(value) is str
        and _plain(value)
        and len(value) <= limit
        and (not required or (value != "" and not value.isspace()))
    ):
        return value
    if value is None:
        if required:
            raise InvalidEntry(f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise InvalidEntry(f"{name} must be a string", field=name)
    if not _plain(value):
        problem = text_problem(value)
        if problem:
            raise InvalidEntry(f"{name} {problem}", field=name)
    if required and not value.strip():
        raise InvalidEntry(f"{name} must not be empty", field=name)
    if len(value) > limit:
        raise InvalidEntry(f"{name} is longer than {limit} characters", field=name)
    return value


def _unit(value: Any, name: str) -> float:
    """A required number from 0 to 1."""
    if type(value) is float and 0.0 <= value <= 1.0:  # the usual value: at once (a NaN fails the comparison)
        return value
    if value is None:
        raise InvalidEntry(f"{name} is required", field=name)
    number = finite_number(value, name)
    if not 0.0 <= number <= 1.0:
        raise InvalidEntry(f"{name} must be between 0 and 1", field=name)
    return number


def finite_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEntry(f"{name} must be a number", field=name)
    try:
        number = float(value)
    except OverflowError:
        raise InvalidEntry(f"{name} is outside the range of a double-precision number", field=name) from None
    if not math.isfinite(number):
        raise InvalidEntry(f"{name} must be a finite number (not NaN or infinite)", field=name)
    return number


def parse_time(value: Any, name: str, *, now: datetime, max_future: timedelta | None = MAX_FUTURE) -> datetime:
    """An aware datetime; refused when more than ``max_future`` after ``now`` (None: no bound, for filters)."""
    if type(value) is str and value.isprintable():
        # The usual time, an offset and a year from API_EARLIEST_YEAR, passes at once (``fromisoformat`` reads a
        # trailing "Z" since Python 3.11); anything else goes through the checks below, for the message.
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if (
                parsed.tzinfo is not None
                and max_future is not None
                and _earliest_year() <= parsed.year <= 9998
                and parsed <= now + max_future
            ):
                return parsed
    if not isinstance(value, str):
        raise InvalidEntry(f"{name} must be an ISO 8601 string with an offset", field=name)
    try:
        if not value.isprintable():  # fromisoformat passes a NUL or a newline between the time and its offset
            raise ValueError(value)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise InvalidEntry(f"{name} is not an ISO 8601 time: {value[:40]!r}", field=name) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidEntry(f"{name} must carry a UTC offset (e.g. 'Z' or '+02:00')", field=name)
    # Filters (no future bound) may reach back further; entries and responses start in API_EARLIEST_YEAR.
    earliest = 2 if max_future is None else _earliest_year()
    if not earliest <= parsed.year <= 9998:
        # Also keeps the conversion to UTC inside what a datetime can hold (year 1 at +05:00 cannot be).
        raise InvalidEntry(f"{name} must be a time from the year {earliest} on, not {value[:40]!r}", field=name)
    if max_future is not None and parsed > now + max_future:
        raise InvalidEntry(f"{name} is more than 5 minutes in the future", field=name)
    return parsed


@functools.cache
def _earliest_year() -> int:
    """``settings.API_EARLIEST_YEAR``, read once (a lazy settings read is a quarter of a time's parsing), again
    after a test changes it."""
    return int(settings.API_EARLIEST_YEAR)


@receiver(setting_changed)
def _setting_changed(*, setting: str, **_: Any) -> None:
    if setting == "API_EARLIEST_YEAR":
        _earliest_year.cache_clear()


def _at(name: str, key: str) -> str:
    return f"{name}.{key}" if name else key


def response_parse(raw: Any, *, now: datetime, name: str = "humanResponse") -> ResponseInput:
    """Check a human response. ``name`` prefixes the field names in errors; "" for a response body itself."""
    obj = _obj(raw, name or "body")
    action = _str(obj, "action", _at(name, "action"), limit=20)
    if action not in RESPONSE_ACTIONS:
        raise InvalidEntry(
            f"{_at(name, 'action')} must be one of {', '.join(RESPONSE_ACTIONS)}, not {action!r}",
            field=_at(name, "action"),
        )
    modified = _str(obj, "modifiedAction", _at(name, "modifiedAction"), required=False, limit=100)
    if action == "modify" and not modified:
        raise InvalidEntry(
            f"{_at(name, 'modifiedAction')} is required when action is modify", field=_at(name, "modifiedAction")
        )
    note = _str(obj, "note", _at(name, "note"), required=False, limit=MAX_TEXT)
    responded_at = parse_time(obj["respondedAt"], _at(name, "respondedAt"), now=now) if "respondedAt" in obj else now
    responder = _str(obj, "responderId", _at(name, "responderId"), required=False) or ""
    ttr = obj.get("timeToRespond")
    if ttr is not None and not 0.0 <= finite_number(ttr, _at(name, "timeToRespond")) <= MAX_TIME_TO_RESPOND:
        raise InvalidEntry(
            f"{_at(name, 'timeToRespond')} must be between 0 and {MAX_TIME_TO_RESPOND:.0f} seconds (ten years)",
            field=_at(name, "timeToRespond"),
        )
    return ResponseInput(
        action=str(action),
        responded_at=responded_at,
        responder_id=responder,
        modified_action=modified,
        note=note,
        time_to_respond=None if ttr is None else finite_number(ttr, _at(name, "timeToRespond")),
    )


def entry_parse(raw: Any, *, now: datetime) -> EntryInput:
    """Check one entry and return its plain values, with a content hash for idempotency."""
    obj = _obj(raw, "entry")
    given_id = _str(obj, "id", "id", required=False, limit=MAX_ID)
    if given_id is not None and not given_id.strip():
        raise InvalidEntry("id must not be empty (leave it out to get a UUID)", field="id")
    timestamp = parse_time(obj.get("timestamp"), "timestamp", now=now)
    agent_id = _str(obj, "agentId", "agentId", limit=100)
    session_id = _str(obj, "sessionId", "sessionId")

    decision = _obj(obj.get("decision"), "decision")
    action = _str(decision, "action", "decision.action", limit=100)
    # Optional here: a rule-based agent replaces it with the rule that fired (context.matchedRules). Whether this
    # agent may leave it out is checked with the agent (auditlog.services._AgentContext.check).
    confidence = decision.get("confidence")
    if confidence is not None:
        confidence = _unit(confidence, "decision.confidence")
    # Thresholds are compared with confidences, which lie in 0..1 (contract, "Threshold").
    threshold_used = _unit(decision.get("thresholdUsed"), "decision.thresholdUsed")
    reasoning = _str(decision, "reasoning", "decision.reasoning", required=False, limit=MAX_TEXT) or ""
    # Both are usually left out: looked at only when sent.
    threshold_name = (
        _str(decision, "thresholdName", "decision.thresholdName", required=False, limit=100)
        if "thresholdName" in decision
        else None
    )
    shadow_action = (
        _str(decision, "shadowAction", "decision.shadowAction", required=False, limit=100)
        if "shadowAction" in decision
        else None
    )
    shadow_proposal_id = _whole(decision.get("shadowProposalId"), "decision.shadowProposalId", "a proposal id")

    context = _obj(obj.get("context"), "context")
    input_hash = _str(context, "inputHash", "context.inputHash")
    features_raw = _obj(context.get("features", {}), "context.features")
    if len(features_raw) > MAX_FEATURES:
        raise InvalidEntry(f"context.features has more than {MAX_FEATURES} features", field="context.features")
    values = features_raw.values()
    names = "".join(features_raw)
    if (
        # The usual features pass at once: short storable names (joined: plain only if each one is, and short
        # when the names together are), finite floats (a NaN or an infinity makes the sum one). Anything else is
        # checked one by one below, for its message.
        _plain(names)
        and (len(names) <= 200 or max(map(len, features_raw)) <= 200)
        and all(type(v) is float for v in values)
        and math.isfinite(sum(values))
    ):
        features: dict[str, float] = features_raw
    else:
        features = {}
        for key, value in features_raw.items():
            if len(key) > 200:
                raise InvalidEntry("context.features has a name longer than 200 characters", field="context.features")
            problem = None if _plain(key) else text_problem(key)
            if problem:
                raise InvalidEntry(f"context.features has a name that {problem}", field="context.features")
            features[key] = finite_number(value, f"context.features.{key}")
    rules_raw = context.get("matchedRules", [])
    if not _plain_rules(rules_raw):
        _check_rules(rules_raw)

    config_version = _whole(obj.get("configVersion"), "configVersion", "a version number")

    response = None
    if obj.get("humanResponse") is not None:
        response = response_parse(obj["humanResponse"], now=now)
        if not response.responder_id:
            raise InvalidEntry("humanResponse.responderId is required", field="humanResponse.responderId")
        if response.responded_at < timestamp:
            raise InvalidEntry(
                "humanResponse.respondedAt is before the decision's timestamp", field="humanResponse.respondedAt"
            )

    # Positional, in the order of EntryInput's fields: by keyword, making one took three times as long (matching
    # 17 names), 3 % of a batch's time.
    entry = EntryInput(
        given_id or uuid7(),  # id
        given_id is not None,  # id_given
        timestamp,
        str(agent_id),
        str(session_id),
        str(action),
        confidence,
        threshold_used,
        reasoning,
        threshold_name,
        str(input_hash),
        features,
        list(rules_raw),  # matched_rules
        response,  # human_response
        config_version,
        shadow_action,
        shadow_proposal_id,
    )
    return _with_hash(entry)


def _plain_rules(rules: Any) -> bool:
    """The usual matched rules at once: a short list of strings (``join`` takes strings only) that are short
    (when all of them together are) and storable (joined: plain only if each one is)."""
    if type(rules) is not list or len(rules) > MAX_RULES:
        return False
    try:
        joined = "".join(rules)
    except TypeError:
        return False
    return len(joined) <= 200 and _plain(joined)


def _check_rules(rules_raw: Any) -> None:
    """The matched rules checked one by one, for the message that names what is wrong."""
    if not isinstance(rules_raw, list) or not all(isinstance(r, str) for r in rules_raw):
        raise InvalidEntry("context.matchedRules must be a list of strings", field="context.matchedRules")
    if len(rules_raw) > MAX_RULES:
        raise InvalidEntry(f"context.matchedRules has more than {MAX_RULES} rules", field="context.matchedRules")
    if any(len(r) > 200 for r in rules_raw):
        raise InvalidEntry("context.matchedRules has a rule longer than 200 characters", field="context.matchedRules")
    if not _plain("".join(rules_raw)):  # plain only if every rule is
        for rule_name in rules_raw:
            problem = None if _plain(rule_name) else text_problem(rule_name)
            if problem:
                raise InvalidEntry(f"context.matchedRules has a rule that {problem}", field="context.matchedRules")


def _whole(value: Any, name: str, what: str) -> int | None:
    """An optional number that names a row (a version, a proposal): a whole number from 1, or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31):
        raise InvalidEntry(f"{name} must be {what} (a whole number from 1)", field=name)
    return value


# --- The content hash: what tells a resend (same id, same content) from a conflict (same id, other content) ---
#
# Version 2 (stored as "v2:" and 60 hex digits, within the column's 64 characters): BLAKE2b of the entry's values
# in a fixed order, encoded by orjson. Version 1 (64 hex digits, no prefix, stored before): SHA-256 of the entry
# as a sorted-key ``json.dumps`` dict. New entries get version 2; a stored hash of either version is compared
# with the same version of the incoming entry (``content_hash_matches``), so a resend of an entry stored under
# version 1 is still a duplicate.

HASH_V2 = "v2:"


def _content_v2(entry: EntryInput) -> list[Any]:
    response = entry.human_response
    return [
        entry.id,
        entry.timestamp,  # orjson writes RFC 3339 with the offset as sent
        entry.agent_id,
        entry.session_id,
        entry.action,
        entry.confidence,
        entry.threshold_used,
        entry.reasoning,
        entry.threshold_name,
        entry.input_hash,
        # Keys sorted by OPT_SORT_KEYS; the JSON made by ``_with_hash``, which the stored row uses too.
        orjson.Fragment(entry.features_json) if entry.features_json else entry.features,
        entry.matched_rules,
        None
        if response is None
        else [
            response.action,
            response.responded_at,
            response.responder_id,
            response.modified_action,
            response.note,
            response.time_to_respond,
        ],
        entry.config_version,
        # Only when sent, so the hashes of entries stored before the shadow existed still match a resend.
        *_shadow_content(entry),
    ]


def _shadow_content(entry: EntryInput) -> list[Any]:
    if entry.shadow_action is None and entry.shadow_proposal_id is None:
        return []
    return [[entry.shadow_action, entry.shadow_proposal_id]]


def _hash_v2(entry: EntryInput) -> str:
    canonical = orjson.dumps(_content_v2(entry), option=orjson.OPT_SORT_KEYS)
    return HASH_V2 + hashlib.blake2b(canonical, digest_size=30).hexdigest()


def _content(entry: EntryInput) -> dict[str, Any]:
    """Version 1's content: the entry as ``dataclasses.asdict`` gives it, less ``content_hash`` and
    ``id_given``, built by hand (``asdict`` deep-copies every value)."""
    response = entry.human_response
    content = {
        "id": entry.id,
        "timestamp": entry.timestamp,
        "agent_id": entry.agent_id,
        "session_id": entry.session_id,
        "action": entry.action,
        "confidence": entry.confidence,
        "threshold_used": entry.threshold_used,
        "reasoning": entry.reasoning,
        "threshold_name": entry.threshold_name,
        "input_hash": entry.input_hash,
        "features": entry.features,
        "matched_rules": entry.matched_rules,
        "human_response": None
        if response is None
        else {
            "action": response.action,
            "responded_at": response.responded_at,
            "responder_id": response.responder_id,
            "modified_action": response.modified_action,
            "note": response.note,
            "time_to_respond": response.time_to_respond,
        },
    }
    if entry.config_version is not None:
        # Only when sent, so the hashes of entries stored before the field existed still match a resend.
        content["config_version"] = entry.config_version
    if entry.shadow_action is not None or entry.shadow_proposal_id is not None:
        content["shadow"] = _shadow_content(entry)
    return content


def content_hash_v1(entry: EntryInput) -> str:
    """Version 1 of the content hash, for comparing with hashes stored before version 2."""
    canonical = json.dumps(_content(entry), sort_keys=True, default=_isoformat, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def content_hash_matches(entry: EntryInput, stored: str) -> bool:
    """Whether ``stored`` (a registry row's hash, of either version) is the hash of ``entry``'s content: the one
    rule that tells a duplicate from a conflict."""
    if stored.startswith(HASH_V2):
        return stored == entry.content_hash
    return stored == content_hash_v1(entry)


def _with_hash(entry: EntryInput) -> EntryInput:
    entry.features_json = orjson.dumps(entry.features, option=orjson.OPT_SORT_KEYS)
    entry.content_hash = _hash_v2(entry)
    return entry


def _isoformat(value: datetime) -> str:
    return value.isoformat()


# --- Time-ordered ids -------------------------------------------------------------------------------------------


def uuid7(*, ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562, section 5.7) as text: 48 bits of Unix milliseconds, version 7, 12 random bits, the
    RFC 4122 variant, 62 random bits. Ids made in later milliseconds sort after earlier ones (as text, too);
    within one millisecond their order is random. ``ms`` fixes the time, for tests."""
    if ms is None:
        ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits; 74 of them are used
    value = (
        ((ms & 0xFFFF_FFFF_FFFF) << 80)
        | (0x7 << 76)
        | (((rand >> 62) & 0xFFF) << 64)
        | (0b10 << 62)
        | (rand & 0x3FFF_FFFF_FFFF_FFFF)
    )
    return str(uuid.UUID(int=value))


def sample_draw(entry_id: str) -> float:
    """A uniform draw in [0, 1) fixed by the entry id, so sampling is reproducible and idempotent."""
    digest = hashlib.blake2b(entry_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
