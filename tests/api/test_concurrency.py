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


@pytest.mark.configured
@pytest.mark.django_db(transaction=True)
def test_post_decision__outside_a_transaction_on_postgresql__created_duplicate_conflict():
    # Outside a test transaction, PostgreSQL takes the one-statement insert path.
    _, key = make_agent()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = entry(id="solo", humanResponse={"action": "dismiss", "responderId": "rita", "note": "noise"})

    def post(data: Any) -> Any:
        return client.post("/api/v1/decisions", data=json.dumps(data), content_type="application/json")

    created = post(body)
    assert created.status_code == 201
    assert created.json()["configVersion"] == 1
    assert post(body).json() == created.json()
    assert post(body).status_code == 200
    assert post({**body, "sessionId": "other"}).status_code == 409
    stored = client.get("/api/v1/decisions/solo").json()
    history = stored.pop("responseHistory")  # the detail read adds every answer; the imported one is the only one
    assert stored == created.json()
    assert [(r["revision"], r["action"], r["note"]) for r in history] == [(1, "dismiss", "noise")]
    assert stored["humanResponse"]["note"] == "noise"
    assert stored["context"]["features"] == {"amount_z": 3.2, "night": 1.0}
    assert Decision.objects.filter(entry_id="solo").count() == DecisionKey.objects.filter(entry_id="solo").count() == 1
