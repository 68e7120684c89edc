"""The live config an agent decides with, the contract's decision rule, and its copy on disk."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any


class ConfigUnavailable(LookupError):
    """No config was ever read: the server has not answered yet and the spool holds no copy."""


@dataclass(frozen=True)
class Config:
    """One config version of the agent. ``thresholds`` maps each threshold's name to its value."""

    version: int
    thresholds: dict[str, float]
    agent_id: str = ""
    actions: tuple[str, ...] = ()  # weakest first
    gated_actions: dict[str, str] = field(default_factory=dict)  # threshold name -> the action it gates
    activated_at: str | None = None
    etag: str | None = None
    from_disk: bool = False  # read from the spool's copy, not (yet) from the server

    @classmethod
    def from_json(cls, body: Mapping[str, Any], *, etag: str | None, from_disk: bool = False) -> Config:
        thresholds = body["thresholds"]
        if not isinstance(thresholds, Mapping) or not thresholds:
            raise ValueError("the config has no thresholds")
        return cls(
            version=int(body["version"]),
            thresholds={str(k): float(v) for k, v in thresholds.items()},
            agent_id=str(body.get("agentId") or ""),
            actions=tuple(str(a) for a in body.get("actions") or ()),
            gated_actions={str(k): str(v) for k, v in (body.get("gatedActions") or {}).items()},
            activated_at=body.get("activatedAt"),
            etag=etag,
            from_disk=from_disk,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "agentId": self.agent_id,
            "version": self.version,
            "activatedAt": self.activated_at,
            "thresholds": dict(self.thresholds),
            "actions": list(self.actions),
            "gatedActions": dict(self.gated_actions),
        }

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
