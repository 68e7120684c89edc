"""``Authorization: Bearer <key>`` for agent keys and personal tokens (both stored hashed)."""

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions

from people.keys import AGENT_KIND, USER_KIND, key_matches, key_parse
from people.models import PersonalToken
from thresholds.models import Agent, AgentKey


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

    @property
    def username(self) -> str:
        return f"agent:{self.agent.agent_id}"

    def __str__(self) -> str:
        return self.username


def acting_agent(request: Any) -> Agent | None:
    """The agent whose key made the request, or None for a human."""
    user = getattr(request, "user", None)
    return user.agent if isinstance(user, AgentPrincipal) else None


class BearerAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        # Guessing keys is throttled per address: after LOOPSITE_THROTTLE_RATES["failed_key"] failures in a window,
        # every bearer request from that address is refused (429) until the window ends, good key or not.
        from people.throttling import client_address, window_full, window_hit

        address = client_address(request)
        wait = window_full("failed_key", address)
        if wait is not None:
            raise exceptions.Throttled(wait=wait, detail="too many failed bearer keys from this address")
        try:
            return self._principal(key.strip())
        except exceptions.AuthenticationFailed:
            window_hit("failed_key", address)
            raise

    def _principal(self, key: str) -> tuple[Any, Any]:
        parsed = key_parse(key)
        if parsed is None:
            raise exceptions.AuthenticationFailed("malformed bearer key")
        kind, prefix = parsed
        if kind == AGENT_KIND:
            # The prefix is unique: a plain lookup, with no ORDER BY from the model's default ordering.
            agent_key = (
                AgentKey.objects.select_related("agent").filter(prefix=prefix, revoked_at=None).order_by().first()
            )
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


__all__ = ["AgentPrincipal", "AnonymousUser", "BearerAuthentication", "acting_agent"]
