"""Which arm of a canary a session runs under: the one rule the agent client and the server both apply.

A session is in the canary arm when ``canary_draw(session_id, version) < share``. The draw is the first 8 bytes of
SHA-256 over ``"<canary version>:<sessionId>"`` (UTF-8), big-endian, divided by 2**64: uniform in [0, 1), the same in
every process and after every restart, and different for each canary (the version is the salt), so the same
sessions are not always the ones that try a change first.

The agent client (``loopsite_client.config.canary_draw``) is a separate distribution that agents install without
the server; it carries the same few lines, and ``tests/rollouts/test_arms.py`` checks the two agree.
"""

import hashlib


def canary_draw(session_id: str, version: int) -> float:
    digest = hashlib.sha256(f"{version}:{session_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_canary(session_id: str, *, share: float, version: int) -> bool:
    """Whether ``session_id`` runs under the canary's values."""
    return canary_draw(session_id, version) < share
