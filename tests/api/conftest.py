from collections.abc import Iterator
from typing import Any

import pytest
import time_machine

from auditlog.models import Decision, DecisionKey
from tests.factories import NOW


@pytest.fixture(autouse=True)
def _clock_at_now() -> Iterator[None]:
    """The API reads the clock; hold it at the factories' NOW so timestamps and timeToRespond are exact."""
    with time_machine.travel(NOW, tick=False):
        yield


def rows() -> tuple[int, int]:
    """What the decision log holds: (decisions, registered ids)."""
    return Decision.objects.count(), DecisionKey.objects.count()


def bearer(client: Any, key: str) -> Any:
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client
