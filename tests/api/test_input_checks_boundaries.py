"""What the database cannot store, refused before any view runs (contract, "Bad input gets a 4xx"): the API's
JSON parser for every body but the decision log's, and the middleware for paths and query strings."""

import io
import json
from typing import Any

import pytest
from django.test import Client

from loopsite.exceptions import ValidationFailed
from loopsite.input_checks import MAX_DEPTH, CheckedJSONParser, text_problem, tree_check
from tests.conftest import client_for

NUL = "contains a NUL character (\\u0000), which cannot be stored"


LOCK = "/api/v1/agents/triage/lock"  # a body read by the API's JSON parser (the decision log reads its own)


def post(user: Any, url: str, body: str) -> Any:
    return client_for(user).post(url, body, content_type="application/json")


def error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response.content)["error"]
    return body


@pytest.mark.django_db
def test_checked_json_parser__a_storable_body__parsed(agent: Any, approver: Any) -> None:
    response = post(approver, LOCK, json.dumps({"rationale": "converged"}))
    assert response.status_code in (200, 201), response.content


@pytest.mark.django_db
def test_checked_json_parser__nul_in_a_value__400_naming_where(agent: Any, approver: Any) -> None:
    response = post(approver, LOCK, json.dumps({"rationale": "a\x00"}))
    assert response.status_code == 400
    assert error(response)["message"] == f"rationale {NUL}"


@pytest.mark.django_db
def test_checked_json_parser__empty_body__an_empty_object_and_the_views_refusal(agent: Any, approver: Any) -> None:
    response = post(approver, LOCK, "")
    assert response.status_code == 400
    assert error(response)["message"] == "rationale: This field is required."


@pytest.mark.django_db
def test_checked_json_parser__malformed__400_saying_so(agent: Any, approver: Any) -> None:
    response = post(approver, LOCK, '{"rationale": ')
    assert response.status_code == 400
    assert error(response)["message"].startswith("body is not valid JSON")


def nested_dicts(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_tree_check__objects_exactly_max_depth__accepted_one_deeper__refused_naming_the_path() -> None:
    tree_check(nested_dicts(MAX_DEPTH), "")
    with pytest.raises(ValidationFailed) as caught:
        tree_check(nested_dicts(MAX_DEPTH + 1), "")
    path = ".".join(["a"] * (MAX_DEPTH + 1))
    assert (caught.value.field, caught.value.message) == (path, f"{path} nests deeper than {MAX_DEPTH} levels")


def test_tree_check__too_deep_at_the_top__named_body() -> None:
    with pytest.raises(ValidationFailed) as caught:
        tree_check(1, "", depth=MAX_DEPTH + 1)
    assert (caught.value.field, caught.value.message) == ("body", f"body nests deeper than {MAX_DEPTH} levels")


def test_tree_check__lists_exactly_max_depth__accepted_one_deeper__refused_naming_the_path() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    tree_check(value, "")
    with pytest.raises(ValidationFailed) as caught:
        tree_check([value], "")
    assert caught.value.field == "[0]" * (MAX_DEPTH + 1)


def test_text_problem__unpaired_surrogate__said() -> None:
    assert text_problem("\udc80x") == "contains an unpaired surrogate (such as \\ud800), which is not valid Unicode"


# --- The middleware ----------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/decisions?agentId=a%00", "agentId"),
        ("/api/v1/decisions?agentId=ok&agentId=a%00", "agentId"),
        ("/api/v1/decisions?a%00=1", "query"),
        ("/api/v1/decisions/a%00b", "path"),
    ],
)
def test_refuse_unstorable_text__api__400_json_naming_the_field(url: str, field: str) -> None:
    response = Client().get(url)
    assert response.status_code == 400
    assert json.loads(response.content) == {"error": {"code": "invalid", "message": f"{field} {NUL}", "field": field}}


@pytest.mark.django_db
def test_refuse_unstorable_text__a_page__400_plain_text() -> None:
    response = Client().get("/queue/?q=%00")
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == f"q {NUL}"


@pytest.mark.django_db
def test_refuse_unstorable_text__clean_query__passes_to_the_view() -> None:
    assert Client().get("/api/v1/decisions?agentId=ok").status_code in (401, 403)


@pytest.mark.parametrize("stream", [None, io.BytesIO(b"")])
def test_checked_json_parser__no_body_at_all__an_empty_object(stream: Any) -> None:
    # DRF does not call its parser for an empty body; anything else that does gets an empty object.
    assert CheckedJSONParser().parse(stream) == {}
