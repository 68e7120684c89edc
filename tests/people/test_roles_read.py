"""The role checks read the user's groups afresh on every request (people/roles.py), with one plain SELECT."""

from typing import Any

import pytest
from django.contrib.auth.models import Group

from people.roles import GROUP_NAMES, Role, _group_names, is_approver, is_reviewer, role_groups_ensure
from tests.factories import UserFactory, user_with_role
from tests.web.conftest import signed_in

pytestmark = pytest.mark.django_db


def fresh(user: Any) -> Any:
    """The user as the next request loads it: no copy of its groups from an earlier check."""
    return type(user).objects.get(pk=user.pk)


@pytest.mark.parametrize("groups", [(), ("reviewers",), ("reviewers", "approvers"), ("approvers", "auditors")])
def test_group_names__as_the_orm_reads_them(groups: tuple[str, ...]) -> None:
    user: Any = UserFactory()
    other: Any = UserFactory()  # another user's groups are not this one's
    other.groups.add(Group.objects.get_or_create(name="someone-else")[0])
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])

    assert _group_names(fresh(user)) == set(user.groups.values_list("name", flat=True)) == set(groups)


def test_queue__reviewer_taken_out_of_the_group__refused_at_the_next_request() -> None:
    user = user_with_role("reviewer")
    client = signed_in(user)
    assert client.get("/queue/").status_code == 200

    user.groups.remove(role_groups_ensure()[Role.REVIEWER])

    response = client.get("/queue/")
    assert response.status_code == 403
    assert b"Only reviewers, approvers and admins respond to decisions." in response.content


def test_queue__user_put_in_the_group__let_in_at_the_next_request() -> None:
    user: Any = UserFactory()
    client = signed_in(user)
    assert client.get("/queue/").status_code == 403

    user.groups.add(role_groups_ensure()[Role.REVIEWER])

    assert client.get("/queue/").status_code == 200


def test_queue__reviewers_group_renamed__its_members_refused() -> None:
    user = user_with_role("reviewer")
    client = signed_in(user)
    assert client.get("/queue/").status_code == 200

    Group.objects.filter(name=GROUP_NAMES[Role.REVIEWER]).update(name="former-reviewers")

    assert client.get("/queue/").status_code == 403


def test_role_checks__one_read_of_the_groups_per_request(django_assert_num_queries: Any) -> None:
    user = fresh(user_with_role("approver"))
    with django_assert_num_queries(1):
        assert is_approver(user) and is_reviewer(user) and is_reviewer(user)


def test_role_checks__anonymous_and_groupless__no_role(django_assert_num_queries: Any) -> None:
    from django.contrib.auth.models import AnonymousUser

    with django_assert_num_queries(0):
        assert not is_reviewer(AnonymousUser())
    assert not is_reviewer(fresh(UserFactory()))
