import re

import pytest
from django.test import Client

from tests.factories import user_with_role


@pytest.mark.django_db
def test_schema__openapi_3_with_every_decision_and_config_operation():
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path, method in [
        ("/api/v1/agents/{agent_id}/config", "get"),
        ("/api/v1/agents/{agent_id}/config/versions", "get"),
        ("/api/v1/decisions", "post"),
        ("/api/v1/decisions", "get"),
        ("/api/v1/decisions/batch", "post"),
        ("/api/v1/decisions/{entry_id}", "get"),
        ("/api/v1/decisions/{entry_id}/response", "post"),
    ]:
        assert method in paths[path], (path, method)
    # The request shape is the seed's ActionLogEntry, nested parts included.
    entry = schema["components"]["schemas"]["EntryInRequest"]
    assert {"timestamp", "agentId", "sessionId", "decision", "context"} <= set(entry["required"])
    assert "bearerKey" in schema["components"]["securitySchemes"]


@pytest.mark.django_db
def test_docs__page_served_from_this_site__no_external_host():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page)
    assert [u for u in assets if "//" in u] == []
    # Swagger UI's script and style come from this site's static files (the sidecar), and are there.
    assert any(u.endswith("swagger-ui-bundle.js") for u in assets)
    for url in assets:
        assert Client().get(url).status_code == 200, url
    assert not re.search(r"https?://(?!localhost|127\.0\.0\.1|testserver)", page)


@pytest.mark.django_db
def test_healthz__everything_up__200_ok_each():
    response = Client().get("/healthz")
    assert Client().get("/healthz/").status_code == response.status_code
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "cache": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_healthz__broker_folder_missing__503_naming_the_broker(settings, tmp_path):
    settings.REDIS_URL = ""
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(tmp_path / "gone"),
        "data_folder_out": str(tmp_path / "gone"),
        "processed_folder": str(tmp_path),
    }
    staff = Client()
    staff.force_login(user_with_role("admin"))
    response = staff.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok" and body["cache"] == "ok"
    assert body["broker"].startswith("error") and "gone" in body["broker"]


@pytest.mark.django_db
def test_healthz__redis_unreachable__anonymous_reads_degraded_without_hosts_or_ports(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/healthz")
    assert Client().get("/healthz/").status_code == response.status_code
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "cache": "ok", "broker": "degraded"}
    assert "127.0.0.1" not in response.content.decode()


@pytest.mark.django_db
def test_healthz__redis_unreachable__staff_and_only_staff_read_the_error(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    reviewer, staff = Client(), Client()
    reviewer.force_login(user_with_role("reviewer"))
    staff.force_login(user_with_role("admin"))
    assert reviewer.get("/healthz").json()["broker"] == "degraded"
    broker = staff.get("/healthz").json()["broker"]
    assert broker.startswith("error") and "Connection" in broker


def test_schema__proposal_status_enum_named_after_the_model_choices(settings):
    from tuner.models import Proposal

    assert settings.SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["ProposalStatusEnum"] == Proposal.Status.values


@pytest.mark.django_db
def test_schema__every_operation_with_credentials_documents_429_with_retry_after():
    paths = Client().get("/api/schema/", {"format": "json"}).json()["paths"]
    operations = [op for item in paths.values() for op in item.values() if isinstance(op, dict)]
    with_credentials = [op for op in operations if "401" in op.get("responses", {})]
    assert len(with_credentials) >= 15
    for op in with_credentials:
        throttled = op["responses"]["429"]
        assert "Retry-After" in throttled["headers"] and throttled["content"] == op["responses"]["401"]["content"]
