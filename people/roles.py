"""The three roles. Reviewers respond; approvers respond and decide proposals; admins do everything.

An agent with designated approvers narrows the second: only they (and admins) decide its proposals, lock it and roll
it back. That scope is the approval gate's, in ``approvals.guard.approver_check``."""

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group


class Role(StrEnum):
    REVIEWER = "reviewer"
    APPROVER = "approver"
    ADMIN = "admin"


GROUP_NAMES = {Role.REVIEWER: "reviewers", Role.APPROVER: "approvers"}


def role_groups_ensure() -> dict[Role, Group]:
    return {role: Group.objects.get_or_create(name=name)[0] for role, name in GROUP_NAMES.items()}


def _in_group(user: AbstractBaseUser | AnonymousUser, group: str) -> bool:
    # The request's copy first: ``hasattr(user, "groups")`` builds a related manager, on each of a page's checks.
    cached = getattr(user, "_loopsite_groups", None)
    if cached is not None:
        return group in cached
    if not getattr(user, "is_authenticated", False) or not hasattr(user, "groups"):
        return False
    cached = set(user.groups.values_list("name", flat=True))
    user._loopsite_groups = cached  # type: ignore[union-attr]
    return group in cached


def is_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_superuser", False))


def is_staff(user: AbstractBaseUser | AnonymousUser) -> bool:
    return is_admin(user) or bool(getattr(user, "is_staff", False))


def is_approver(user: AbstractBaseUser | AnonymousUser) -> bool:
    return is_admin(user) or _in_group(user, GROUP_NAMES[Role.APPROVER])


def is_reviewer(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Anyone who may respond to decisions: reviewers, approvers and admins."""
    return is_approver(user) or _in_group(user, GROUP_NAMES[Role.REVIEWER])
