from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from people.keys import key_hash
from people.models import PersonalToken
from tests.factories import user_with_role

pytestmark = pytest.mark.django_db


def test_create_token__known_user__token_alone_on_last_line_and_only_its_hash_stored() -> None:
    user = user_with_role("reviewer", username="rita")
    out = StringIO()

    call_command("create_token", "rita", stdout=out)

    key = out.getvalue().strip().splitlines()[-1]
    token = PersonalToken.objects.get()
    assert key.startswith(f"lsu_{token.prefix}_")
    assert token.user == user
    assert token.hashed_key == key_hash(key)
    assert key not in {token.hashed_key, token.prefix, token.name}


def test_create_token__printed_token__authenticates_as_the_user() -> None:
    user_with_role("reviewer", username="rita")
    out = StringIO()
    call_command("create_token", "rita", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    response = client.get("/api/v1/decisions")

    assert response.status_code == 200


def test_create_token__unknown_user__command_error_and_no_token() -> None:
    with pytest.raises(CommandError, match="unknown user 'nobody'"):
        call_command("create_token", "nobody", stdout=StringIO())

    assert not PersonalToken.objects.exists()


def test_create_token__inactive_user__command_error_and_no_token() -> None:
    user_with_role("reviewer", username="gone", is_active=False)

    with pytest.raises(CommandError, match="user 'gone' is inactive"):
        call_command("create_token", "gone", stdout=StringIO())

    assert not PersonalToken.objects.exists()


def test_create_token__name_too_long__command_error_and_no_token() -> None:
    user_with_role("reviewer", username="rita")

    with pytest.raises(CommandError, match="--name is longer than 100 characters"):
        call_command("create_token", "rita", "--name", "x" * 101, stdout=StringIO())

    assert not PersonalToken.objects.exists()
