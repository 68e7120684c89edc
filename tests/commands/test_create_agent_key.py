from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from tests.factories import make_agent
from thresholds.models import AgentKey

pytestmark = pytest.mark.django_db


def test_create_agent_key__registered_agent__second_key_reads_the_config() -> None:
    make_agent("triage")
    out = StringIO()

    call_command("create_agent_key", "triage", "--name", "eu-west", stdout=out)

    key = out.getvalue().strip().splitlines()[-1]
    assert sorted(AgentKey.objects.values_list("name", flat=True)) == ["default", "eu-west"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/agents/triage/config").json()["version"] == 1


def test_create_agent_key__unknown_agent__command_error_and_no_key() -> None:
    with pytest.raises(CommandError, match="unknown agent 'ghost'"):
        call_command("create_agent_key", "ghost", stdout=StringIO())

    assert not AgentKey.objects.exists()
