import json
import threading
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from auditlog.models import Decision, DecisionKey
from tests.factories import entry, make_agent


@pytest.mark.configured
@pytest.mark.django_db(transaction=True)
def test_post_decision__same_new_id_from_two_threads__one_row_never_500():
    _, key = make_agent()
    body = json.dumps(entry(id="raced"))
    start = threading.Barrier(2)
    statuses: list[int] = []
    failures: list[BaseException] = []

    def send() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        try:
            start.wait(timeout=10)
            response: Any = client.post("/api/v1/decisions", data=body, content_type="application/json")
            statuses.append(response.status_code)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert failures == []
    assert sorted(statuses) == [200, 201]
    assert Decision.objects.filter(entry_id="raced").count() == 1
    assert DecisionKey.objects.filter(entry_id="raced").count() == 1
