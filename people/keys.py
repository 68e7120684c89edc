"""Bearer keys: ``<kind>_<prefix>_<secret>``. The prefix finds the row; a SHA-256 of the whole key checks it.

The secret carries 256 bits of randomness, so a fast hash is as safe as a slow one and keeps every API call
cheap (a password hasher here would cost ~100 ms a request).
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

AGENT_KIND = "lsa"
USER_KIND = "lsu"


@dataclass(frozen=True)
class NewKey:
    key: str
    prefix: str
    hashed_key: str


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_generate(*, kind: str) -> NewKey:
    prefix = secrets.token_hex(6)
    key = f"{kind}_{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(key=key, prefix=prefix, hashed_key=key_hash(key))


def key_parse(key: str) -> tuple[str, str] | None:
    """(kind, prefix) of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return None
    return parts[0], parts[1]


def key_matches(key: str, hashed_key: str) -> bool:
    return hmac.compare_digest(key_hash(key), hashed_key)
