from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("create_user", *args, stdout=out)
    return out.getvalue()


def test_role_groups__after_migrate__exist() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= {"reviewers", "approvers"}


def test_create_user__reviewer_without_password__generated_password_prints_and_works() -> None:
    output = run("rita", "--role", "reviewer", "--email", "rita@example.com")

    user = get_user_model().objects.get(username="rita")
    password = output.strip().splitlines()[-1].removeprefix("password: ")
    assert "created reviewer rita" in output
    assert user.check_password(password)
    assert user.email == "rita@example.com"
    assert list(user.groups.values_list("name", flat=True)) == ["reviewers"]
    assert not user.is_staff and not user.is_superuser


def test_create_user__approver_with_password__in_approvers_and_password_not_printed() -> None:
    output = run("alice", "--role", "approver", "--password", "a-long-passphrase")

    user = get_user_model().objects.get(username="alice")
    assert user.check_password("a-long-passphrase")
    assert "a-long-passphrase" not in output
    assert list(user.groups.values_list("name", flat=True)) == ["approvers"]


def test_create_user__admin__superuser_and_staff() -> None:
    run("root", "--role", "admin", "--password", "a-long-passphrase")

    user = get_user_model().objects.get(username="root")
    assert user.is_superuser and user.is_staff


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bob", "--role", "boss"], "unknown role 'boss'; use one of reviewer, approver, admin"),
        (["bob", "--role", "reviewer", "--password", "short"], "too short"),
        (["bad name!", "--role", "reviewer"], "username 'bad name!' may hold only"),
        (["bob", "--role", "reviewer", "--password", "password"], "too common"),
        (["bob", "--role", "reviewer", "--password", "12345678"], "entirely numeric"),
        (["bobbyjones", "--role", "reviewer", "--password", "bobbyjones1"], "too similar to the username"),
    ],
)
def test_create_user__bad_input__command_error_and_no_user(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)

    assert not get_user_model().objects.exists()


def test_create_user__existing_username__command_error_and_first_user_unchanged() -> None:
    run("rita", "--role", "reviewer", "--password", "first-passphrase")

    with pytest.raises(CommandError, match="user 'rita' exists already"):
        run("rita", "--role", "admin", "--password", "second-passphrase")

    user = get_user_model().objects.get(username="rita")
    assert user.check_password("first-passphrase") and not user.is_superuser
