"""The three roles. Reviewers respond; approvers respond and decide proposals; admins do everything.

An agent with designated approvers narrows the second: only they (and admins) decide its proposals, lock it and roll
it back. That scope is the approval gate's, in ``approvals.guard.approver_check``."""

from collections.abc import Iterable
from enum import StrEnum
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db import connections, router
from django.db.models import ManyToManyField


class Role(StrEnum):
    REVIEWER = "reviewer"
    APPROVER = "approver"
    ADMIN = "admin"


GROUP_NAMES = {Role.REVIEWER: "reviewers", Role.APPROVER: "approvers"}


def role_groups_ensure() -> dict[Role, Group]:
    return {role: Group.objects.get_or_create(name=name)[0] for role, name in GROUP_NAMES.items()}


def group_names_select(alias: str, user: str, aggregate: str = "{}") -> str:
    """``user.groups.values_list("name")`` as the ORM writes it, from the models' metadata: the names of the groups
    joined through the user model's ``groups`` table, for the user whose id is the SQL expression ``user`` (``%s``,
    or a column of an outer query); ``aggregate`` wraps the name column (``array_agg({})``: one row of them)."""
    groups = get_user_model()._meta.get_field("groups")
    assert isinstance(groups, ManyToManyField)
    quote = connections[alias].ops.quote_name
    group = quote(Group._meta.db_table)
    link = quote(groups.m2m_db_table())
    name = quote(Group._meta.get_field("name").column)  # type: ignore[union-attr,arg-type]
    return (
        f"SELECT {aggregate.format(f'{group}.{name}')} FROM {group} INNER JOIN {link} "
        f"ON {group}.{quote(Group._meta.pk.column)} = {link}.{quote(groups.m2m_reverse_name())} "  # type: ignore[union-attr,arg-type]
        f"WHERE {link}.{quote(groups.m2m_column_name())} = {user}"
    )


@cache
def _group_names_sql(alias: str) -> str:
    return group_names_select(alias, "%s")


def _group_names(user: Any) -> set[str]:
    """The names of the user's groups, read now (every request reads them afresh: a role taken away counts at the
    next request). One plain SELECT: through the ORM, compiling the query cost some four times the round trip.
    A user read by ``people.backends.UserBackend`` comes with them (``with_group_names``)."""
    alias = router.db_for_read(Group, instance=user)
    with connections[alias].cursor() as cursor:
        cursor.execute(_group_names_sql(alias), [user.pk])
        return {name for (name,) in cursor.fetchall()}


def with_group_names(user: Any, names: Iterable[str]) -> Any:
    """``user`` carrying the names of its groups, read with it: its role checks in this request use them."""
    user._loopsite_groups = set(names)
    return user


def _in_group(user: AbstractBaseUser | AnonymousUser, group: str) -> bool:
    # The request's copy first: ``hasattr(user, "groups")`` builds a related manager, on each of a page's checks.
    cached = getattr(user, "_loopsite_groups", None)
    if cached is not None:
        return group in cached
    if not getattr(user, "is_authenticated", False) or not hasattr(user, "groups"):
        return False
    return group in with_group_names(user, _group_names(user))._loopsite_groups


def is_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_superuser", False))


def is_staff(user: AbstractBaseUser | AnonymousUser) -> bool:
    return is_admin(user) or bool(getattr(user, "is_staff", False))


def is_approver(user: AbstractBaseUser | AnonymousUser) -> bool:
    return is_admin(user) or _in_group(user, GROUP_NAMES[Role.APPROVER])


def is_reviewer(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Anyone who may respond to decisions: reviewers, approvers and admins."""
    return is_approver(user) or _in_group(user, GROUP_NAMES[Role.REVIEWER])
