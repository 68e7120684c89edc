"""The live config an agent decides with, the contract's decision rule, its shadow and canary, and its copy on
disk."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

logger = logging.getLogger("loopsite_client")


class ConfigUnavailable(LookupError):
    """No config was ever read: the server has not answered yet and the spool holds no copy."""


def canary_draw(session_id: str, version: int) -> float:
    """The session's draw for the canary of config ``version``, uniform in [0, 1): the first 8 bytes of SHA-256
    over the UTF-8 string ``"<version>:<session_id>"``, big-endian, divided by 2**64. A session is in the canary
    arm when its draw is below the canary's share.

    The server applies the very same rule (``rollouts/arms.py``) to tell which arm an entry's session ran under,
    so these lines must not change on one side only: a session the client put in the canary arm and the server
    counts in the control arm would spoil the comparison of the two.
    """
    digest = hashlib.sha256(f"{version}:{session_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Shadow:
    """A pending proposal's candidate value(s), ``{threshold name: value}``: what the agent would decide with if
    the proposal were approved. The agent keeps deciding with its live values; the client logs what the candidate
    would have done (``decision.shadowAction``) so the proposal is judged on real traffic before anyone approves."""

    values: dict[str, float]
    proposal_id: int

    def as_json(self) -> dict[str, Any]:
        return {**self.values, "proposalId": self.proposal_id}


@dataclass(frozen=True)
class Canary:
    """A change rolled out to ``share`` of the sessions: those sessions decide with ``values`` (every threshold)
    and their entries name ``version``; the others stay on the live thresholds."""

    share: float
    values: dict[str, float]
    version: int

    def as_json(self) -> dict[str, Any]:
        return {"share": self.share, "values": dict(self.values), "version": self.version}


def _number(value: Any) -> float | None:
    """``value`` as a finite float when JSON gave a number (not a bool, not a string): None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _values(raw: Any) -> dict[str, float] | None:
    """``{threshold name: value}`` when every key is a string and every value a finite number, else None."""
    if not isinstance(raw, Mapping):
        return None
    values: dict[str, float] = {}
    for name, value in raw.items():
        number = _number(value)
        if not isinstance(name, str) or number is None:
            return None
        values[name] = number
    return values


def _ignored(name: str, raw: Any, reason: str) -> None:
    """Say why an optional field of the config is left out: the agent goes on with its live values, which is what
    an agent that knows nothing of the field does, rather than stop on a field it could do without."""
    logger.warning("loopsite_client.config_field_ignored", extra={"field": name, "reason": reason, "value": raw})


def _shadow_from(raw: Any, thresholds: Mapping[str, float]) -> Shadow | None:
    """The ``shadow`` field, or None when absent or malformed (then logged and ignored)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        _ignored("shadow", raw, "not an object")
        return None
    proposal_id = _whole(raw.get("proposalId"))
    values = _values({k: v for k, v in raw.items() if k != "proposalId"})
    if proposal_id is None:
        _ignored("shadow", raw, "proposalId is not a whole number")
    elif values is None or not values:
        _ignored("shadow", raw, "no candidate value, or one that is not a number")
    elif not values.keys() <= thresholds.keys():
        _ignored("shadow", raw, "a candidate for a threshold this config does not have")
    else:
        return Shadow(values=values, proposal_id=proposal_id)
    return None


def _canary_from(raw: Any, thresholds: Mapping[str, float]) -> Canary | None:
    """The ``canary`` field, or None when absent or malformed (then logged and ignored)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        _ignored("canary", raw, "not an object")
        return None
    share = _number(raw.get("share"))
    values = _values(raw.get("values"))
    version = _whole(raw.get("version"))
    if share is None or not 0.0 <= share <= 1.0:
        _ignored("canary", raw, "share is not a number in 0..1")
    elif version is None:
        _ignored("canary", raw, "version is not a whole number")
    elif values is None or values.keys() != thresholds.keys():
        _ignored("canary", raw, "values do not give a number for every threshold of this config")
    else:
        return Canary(share=share, values=values, version=version)
    return None


@dataclass(frozen=True)
class Config:
    """One config version of the agent. ``thresholds`` maps each threshold's name to its value.

    ``shadow`` (a pending proposal's candidate values) and ``canary`` (a change served to a share of the sessions)
    are None when the server sends none, or sent one the client could not read.
    """

    version: int
    thresholds: dict[str, float]
    agent_id: str = ""
    actions: tuple[str, ...] = ()  # weakest first
    gated_actions: dict[str, str] = field(default_factory=dict)  # threshold name -> the action it gates
    activated_at: str | None = None
    etag: str | None = None
    from_disk: bool = False  # read from the spool's copy, not (yet) from the server
    shadow: Shadow | None = None
    canary: Canary | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any], *, etag: str | None, from_disk: bool = False) -> Config:
        raw_thresholds = body["thresholds"]
        if not isinstance(raw_thresholds, Mapping) or not raw_thresholds:
            raise ValueError("the config has no thresholds")
        thresholds = {str(k): float(v) for k, v in raw_thresholds.items()}
        return cls(
            version=int(body["version"]),
            thresholds=thresholds,
            agent_id=str(body.get("agentId") or ""),
            actions=tuple(str(a) for a in body.get("actions") or ()),
            gated_actions={str(k): str(v) for k, v in (body.get("gatedActions") or {}).items()},
            activated_at=body.get("activatedAt"),
            etag=etag,
            from_disk=from_disk,
            shadow=_shadow_from(body.get("shadow"), thresholds),
            canary=_canary_from(body.get("canary"), thresholds),
        )

    def as_json(self) -> dict[str, Any]:
        """The config as the server sends it (``shadow`` and ``canary`` only when in force), so that the copy on
        disk gives the same arms and the same shadow evidence after a restart."""
        body: dict[str, Any] = {
            "agentId": self.agent_id,
            "version": self.version,
            "activatedAt": self.activated_at,
            "thresholds": dict(self.thresholds),
            "actions": list(self.actions),
            "gatedActions": dict(self.gated_actions),
        }
        if self.shadow is not None:
            body["shadow"] = self.shadow.as_json()
        if self.canary is not None:
            body["canary"] = self.canary.as_json()
        return body

    def in_canary(self, session_id: str | None) -> bool:
        """Whether ``session_id`` decides with the canary's values: ``canary_draw`` below the canary's share. No
        canary, or no session id (nothing to draw on): False."""
        canary = self.canary
        return canary is not None and session_id is not None and canary_draw(session_id, canary.version) < canary.share

    def arm_config(self, session_id: str | None) -> Config:
        """The config ``session_id`` decides with: in the canary arm, this config with the canary's values and
        version (and no canary of its own); else this config itself."""
        return self._canary_arm if self.in_canary(session_id) else self

    @cached_property
    def _canary_arm(self) -> Config:
        """Made once per config, not per decision: ``arm_config`` is on the agent's hot path."""
        canary = self.canary
        if canary is None:
            return self
        return dataclasses.replace(self, thresholds=dict(canary.values), version=canary.version, canary=None)

    def shadow_action(self, confidence: float, session_id: str | None = None) -> str | None:
        """The action the pending proposal would take for ``confidence``: the contract's rule on the values the
        session decides with (its arm's), overridden by the shadow's candidate values. None when there is no
        shadow, or this config does not say which action each threshold gates."""
        return self.arm_config(session_id)._shadow_of(confidence)

    def _shadow_of(self, confidence: float) -> str | None:
        """``shadow_action`` on this config's own values (the session's arm already chosen)."""
        candidate = self._shadow_candidate
        if candidate is None:
            return None
        try:
            return candidate.decide(confidence)[0]
        except ConfigUnavailable:
            return None

    @cached_property
    def _shadow_candidate(self) -> Config | None:
        """This config with the shadow's values in place of its own: made once, not at every logged decision."""
        shadow = self.shadow
        if shadow is None:
            return None
        return dataclasses.replace(self, thresholds={**self.thresholds, **shadow.values}, shadow=None, canary=None)

    def decide(self, confidence: float) -> tuple[str, str, float]:
        """The contract's rule: the strongest action whose threshold value is <= ``confidence``; below every
        threshold, the weakest action. Returns (action, threshold name, threshold value) to log as
        ``decision.action``, ``decision.thresholdName`` and ``decision.thresholdUsed``.

        Among thresholds gating the same action, the lowest one that the confidence reaches is named; below every
        threshold, the lowest threshold (the one the case came closest to).
        """
        if not self.actions or not self.gated_actions:
            raise ConfigUnavailable("this config does not say which action each threshold gates")
        rank = {action: i for i, action in enumerate(self.actions)}
        best: tuple[int, float, str] | None = None
        for name, value in self.thresholds.items():
            if value <= confidence:
                key = (rank.get(self.gated_actions.get(name, ""), 0), -value, name)
                if best is None or key > best:
                    best = key
        if best is None:
            name = min(self.thresholds, key=lambda n: (self.thresholds[n], n))
            return self.actions[0], name, self.thresholds[name]
        name = best[2]
        return self.gated_actions[name], name, self.thresholds[name]

    def gate_of(self, action: Any) -> str | None:
        """The threshold that an entry with ``action`` was decided on, when the entry does not name it: the one
        gating that action (the first by name when several do), or for the weakest action the lowest threshold."""
        return self._gates.get(action) if isinstance(action, str) else None

    @cached_property
    def _gates(self) -> dict[str, str]:
        gates: dict[str, str] = {}
        for name in sorted(self.gated_actions):
            gates.setdefault(self.gated_actions[name], name)
        if self.actions and self.thresholds and self.actions[0] not in gates:
            gates[self.actions[0]] = min(self.thresholds, key=lambda n: (self.thresholds[n], n))
        return gates


class ConfigFile:
    """The last good config, kept in the spool folder so an agent started while the server is down still
    decides on the thresholds it last saw. Written to a temporary file and renamed: never half-written."""

    NAME = "config.json"

    def __init__(self, directory: Path, *, key_fingerprint: str) -> None:
        self.path = directory / self.NAME
        self.key_fingerprint = key_fingerprint

    def load(self) -> Config | None:
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
            if stored.get("keyFingerprint") != self.key_fingerprint:
                return None  # another key's (another agent's) thresholds: not ours to use
            return Config.from_json(stored["config"], etag=stored.get("etag"), from_disk=True)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, config: Config) -> None:
        payload = {"keyFingerprint": self.key_fingerprint, "etag": config.etag, "config": config.as_json()}
        fd, tmp = tempfile.mkstemp(prefix=".config-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(payload, out)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
