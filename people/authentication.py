"""``Authorization: Bearer <key>`` for agent keys and personal tokens (both stored hashed).

Agent keys authenticate every decision an agent logs, so their look-up is kept in each process
(``_agent_key_get``), checked at every request against a stamp in the shared cache that every change to a key
or an agent deletes (``agent_keys_changed``): a revoked key stops working in every process at its next request.
"""

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.db import transaction
from rest_framework import authentication, exceptions

from loopsite.cache import stamp_get, stamps_delete
from loopsite.kept import keep
from people.keys import AGENT_KIND, USER_KIND, key_matches, key_parse
from people.models import PersonalToken
from thresholds.models import Agent, AgentKey
from thresholds.selectors import live_stamp_key


@dataclass
class AgentPrincipal:
    """``request.user`` for a request made with an agent key: authenticated, but no human and no staff."""

    agent: Agent
    is_authenticated: bool = True
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False
    is_anonymous: bool = False
    pk: None = None
    # Shared-cache values read in the key's own round trip: the agent's live-config stamp, so that logging a
    # decision does not wait for the cache a second time (``thresholds.selectors.config_get_live``'s ``seen``).
    seen: Mapping[str, Any] = field(default_factory=dict)
    # The agent's request already counted in that round trip: (the agent's pk, the seconds to wait or None when
    # the request is allowed), for ``people.throttling.AgentKeyThrottle``.
    counted: tuple[int, float | None] | None = None

    @property
    def username(self) -> str:
        return f"agent:{self.agent.agent_id}"

    def __str__(self) -> str:
        return self.username


def acting_agent(request: Any) -> Agent | None:
    """The agent whose key made the request, or None for a human."""
    user = getattr(request, "user", None)
    return user.agent if isinstance(user, AgentPrincipal) else None


def seen_with_key(request: Any) -> Mapping[str, Any]:
    """The shared-cache values read with the request's agent key (``AgentPrincipal.seen``); empty for a human."""
    user = getattr(request, "user", None)
    return user.seen if isinstance(user, AgentPrincipal) else {}


# --- Agent keys, kept in process -----------------------------------------------------------------------------

KEYS_STAMP = "agent-keys:stamp"
_KEPT_MAX = 10_000


@dataclass(frozen=True)
class _KeptKey:
    stamp: str
    agent_key: AgentKey  # with its agent loaded


_kept: dict[str, _KeptKey] = {}  # prefix -> the key as read under ``stamp``
_kept_lock = threading.Lock()


def _keys_stamp(seen: Any = None) -> str | None:
    """The shared stamp, made when absent; None when the shared cache cannot be read (then nothing is kept).
    ``seen``: its value as the request already read it, in one round trip with the failed-key count."""
    return stamp_get(KEYS_STAMP, timeout=None, seen=seen)


def _agent_key_get(prefix: str, *, seen_stamp: Any = None) -> AgentKey | None:
    """The unrevoked agent key with this prefix, its agent loaded; None when there is none.

    From this process's copy while the shared stamp is the one it was read under, else from the database. The
    stamp is read before the database, so a revoke committed after that read deletes the stamp this copy holds.
    """
    stamp = _keys_stamp(seen_stamp)
    if stamp is None:
        # Unreachable: a revoke made meanwhile could not delete the stamp (the outbox retries it), so nothing
        # kept from before may be trusted when the cache comes back.
        _kept.clear()
    else:
        kept = _kept.get(prefix)
        if kept is not None and kept.stamp == stamp:
            return kept.agent_key
    # The prefix is unique: a plain lookup, with no ORDER BY from the model's default ordering.
    agent_key = AgentKey.objects.select_related("agent").filter(prefix=prefix, revoked_at=None).order_by().first()
    if agent_key is None:
        # Revoked or deleted: the copy goes too, or ``_kept_agent`` would go on counting requests made with the
        # revoked key against its agent's rate.
        _kept.pop(prefix, None)
    elif stamp is not None:
        with _kept_lock:
            keep(_kept, prefix, _KeptKey(stamp, agent_key), limit=_KEPT_MAX)
    return agent_key


def agent_keys_changed() -> None:
    """Make every process read agent keys and their agents from the database again: called for every revoke,
    new or deleted key and every change to an agent, after its transaction commits (a process reading between
    the change and its commit would otherwise keep the old row under the new stamp). When the cache cannot be
    reached, the delete goes to the outbox and is retried until it lands."""
    _kept.clear()
    transaction.on_commit(_keys_stamp_delete, robust=True)


def _keys_stamp_delete() -> None:
    _kept.clear()
    stamps_delete(KEYS_STAMP)


def agent_keys_changed_receiver(sender: Any, **kwargs: Any) -> None:
    """For ``post_save`` and ``post_delete`` of ``AgentKey`` and ``Agent`` (connected in ``PeopleConfig.ready``);
    bulk ``update()`` calls ``agent_keys_changed`` itself."""
    agent_keys_changed()


def _kept_agent(key: str, parsed: tuple[str, str] | None) -> Agent | None:
    """The agent of the key this process keeps under the parsed key's prefix, if it keeps one and ``key`` is that
    key (whether the copy still holds is checked after, against the keys' stamp)."""
    kept = _kept.get(parsed[1]) if parsed is not None and parsed[0] == AGENT_KIND else None
    if kept is None or not key_matches(key, kept.agent_key.hashed_key):
        return None
    return kept.agent_key.agent


def bearer_key(header: str) -> str | None:
    """The key an ``Authorization`` header gives in the bearer scheme (any case), as sent; None for another
    scheme or no header. Such a request is decided by ``BearerAuthentication`` alone."""
    scheme, _, key = header.partition(" ")
    return key if scheme.lower() == "bearer" else None


class BearerAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        key = bearer_key(authentication.get_authorization_header(request).decode("latin-1"))
        if key is None:
            return None
        # Guessing keys is throttled per address: after LOOPSITE_THROTTLE_RATES["failed_key"] failures in a window,
        # every bearer request from that address is refused (429) until the window ends, good key or not.
        from people.throttling import client_address, window_full, window_hit, window_hit_reading, window_key

        address = client_address(request)
        now = time.time()
        key = key.strip()
        parsed = key_parse(key)
        failed = window_key("failed_key", address, now=now)
        # One round trip to the cache for the address's failed keys and the agent keys' stamp and, when this process
        # keeps the key, for the live config's stamp of its agent (the request will log for that agent: its config
        # is checked against the stamp, ``thresholds.selectors.config_get_live``) and the agent's request count.
        agent = _kept_agent(key, parsed)
        live_stamp = live_stamp_key(agent.pk) if agent is not None else ""
        agent_wait: float | None = None
        if agent is not None:
            seen, agent_wait = window_hit_reading("agent", agent.pk, [failed, KEYS_STAMP, live_stamp], now=now)
        else:
            try:
                seen = cache.get_many([failed, KEYS_STAMP])
            except Exception:  # noqa: BLE001 - a cache that cannot be read: no lockout known, no key kept
                seen = {}
        wait = window_full("failed_key", address, now=now, seen=seen.get(failed))
        if wait is not None:
            raise exceptions.Throttled(wait=wait, detail="too many failed bearer keys from this address")
        try:
            user, auth = self._principal(key, parsed, seen_stamp=seen.get(KEYS_STAMP))
        except exceptions.AuthenticationFailed:
            window_hit("failed_key", address)
            raise
        if isinstance(user, AgentPrincipal) and agent is not None and user.agent.pk == agent.pk:
            user.counted = (agent.pk, agent_wait)
            if live_stamp in seen:
                user.seen = {live_stamp: seen[live_stamp]}
        return user, auth

    def _principal(
        self, key: str, parsed: tuple[str, str] | None, *, seen_stamp: Any = None
    ) -> tuple[Any, AgentKey | PersonalToken]:
        if parsed is None:
            raise exceptions.AuthenticationFailed("malformed bearer key")
        kind, prefix = parsed
        if kind == AGENT_KIND:
            agent_key = _agent_key_get(prefix, seen_stamp=seen_stamp)
            if agent_key is None or not key_matches(key, agent_key.hashed_key):
                raise exceptions.AuthenticationFailed("unknown or revoked agent key")
            return AgentPrincipal(agent=agent_key.agent), agent_key
        if kind == USER_KIND:
            token = (
                PersonalToken.objects.select_related("user").filter(prefix=prefix, revoked_at=None).order_by().first()
            )
            if token is None or not key_matches(key, token.hashed_key) or not token.user.is_active:
                raise exceptions.AuthenticationFailed("unknown or revoked token")
            return token.user, token
        raise exceptions.AuthenticationFailed("unknown kind of bearer key")

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


__all__ = [
    "AgentPrincipal",
    "AnonymousUser",
    "BearerAuthentication",
    "acting_agent",
    "agent_keys_changed",
    "bearer_key",
]
