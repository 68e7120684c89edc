"""Writes for people: creating users in a role, and issuing and revoking personal API tokens."""

import logging
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from people.exceptions import InvalidPassword, InvalidUsername, UnknownRole, UserExists, UserNotFound
from people.keys import USER_KIND, key_generate
from people.models import PersonalToken
from people.roles import Role, role_groups_ensure

logger = logging.getLogger(__name__)


def role_parse(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise UnknownRole(f"unknown role {value!r}; use one of {choices}", field="role") from None


def user_create(*, username: str, role: Role | str, email: str = "", password: str | None = None) -> tuple[Any, str]:
    """Create a user in one role. Returns (user, password); the password is generated when none is given.

    Reviewers and approvers are members of their group; an admin is a superuser (and so staff).
    """
    role = role if isinstance(role, Role) else role_parse(role)
    User = get_user_model()
    try:
        User.username_validator(username)
    except ValidationError:
        raise InvalidUsername(
            f"username {username!r} may hold only letters, digits and @/./+/-/_", field="username"
        ) from None
    if User.objects.filter(username=username).exists():
        raise UserExists(f"user {username!r} exists already", field="username")
    generated = password is None
    password = secrets.token_urlsafe(12) if password is None else password
    candidate = User(username=username, email=email)
    if not generated:
        try:
            validate_password(password, user=candidate)
        except ValidationError as exc:
            raise InvalidPassword("; ".join(exc.messages), field="password") from None
    with transaction.atomic():
        candidate.set_password(password)
        if role is Role.ADMIN:
            candidate.is_staff = candidate.is_superuser = True
        elif role is Role.APPROVER:
            candidate.is_staff = True  # approvers sign off in the admin too, with the approvers group's permissions
        candidate.save()
        if role is not Role.ADMIN:
            candidate.groups.add(role_groups_ensure()[role])
    logger.info("user.created", extra={"user_id": candidate.pk, "username": username, "role": role.value})
    return candidate, password


def user_get(*, username: str) -> Any:
    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist:
        raise UserNotFound(f"unknown user {username!r}", field="username") from None


def token_create(*, user: Any, name: str = "default") -> tuple[PersonalToken, str]:
    """Issue a personal token. Returns (row, key); only a hash of the key is stored, so show it now or never."""
    new = key_generate(kind=USER_KIND)
    token = PersonalToken.objects.create(user=user, name=name, prefix=new.prefix, hashed_key=new.hashed_key)
    logger.info("token.created", extra={"user_id": user.pk, "token_prefix": new.prefix})
    return token, new.key


def token_revoke(*, tokens: Iterable[PersonalToken], now: datetime) -> int:
    """Revoke tokens that are still active. Returns how many were revoked."""
    pks = [t.pk for t in tokens if t.revoked_at is None]
    count = PersonalToken.objects.filter(pk__in=pks, revoked_at=None).update(revoked_at=now)
    logger.info("token.revoked", extra={"token_ids": pks, "count": count})
    return count
