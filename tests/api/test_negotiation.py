"""The API's content negotiation answers the usual request at once, and every request as DRF's own would."""

from typing import Any

import pytest
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from loopsite.negotiation import UsualRequestNegotiation

RENDERER_SETS = [[JSONRenderer()], [OpenApiYamlRenderer(), OpenApiJsonRenderer()]]


def _choice(negotiation: Any, path: str, accept: str | None, renderers: list[Any], suffix: str | None) -> Any:
    headers: dict[str, Any] = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get(path, **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers, suffix)
    except NotAcceptable:
        return "406"
    except Exception as exc:  # noqa: BLE001 - an unknown format is DRF's 404
        return type(exc).__name__
    return type(renderer).__name__, media_type


@pytest.mark.parametrize("renderers", RENDERER_SETS)
@pytest.mark.parametrize(
    ("path", "accept", "suffix"),
    [
        ("/api/v1/decisions", None, None),
        ("/api/v1/decisions", "*/*", None),
        ("/api/v1/decisions", "application/json", None),
        ("/api/v1/decisions", "application/json; indent=4", None),
        ("/api/v1/decisions", "*/*; q=0.5", None),
        ("/api/v1/decisions", "text/html", None),
        ("/api/v1/decisions", "", None),
        ("/api/v1/decisions?format=json", "*/*", None),
        ("/api/v1/decisions?format=xml", "*/*", None),
        ("/api/v1/decisions?limit=5", "*/*", None),
        ("/api/v1/decisions", "*/*", "yaml"),
    ],
)
def test_select_renderer__any_request__as_drf_chooses(
    path: str, accept: str | None, suffix: str | None, renderers: Any
) -> None:
    usual = _choice(UsualRequestNegotiation(), path, accept, renderers, suffix)
    assert usual == _choice(DefaultContentNegotiation(), path, accept, renderers, suffix)


def test_select_renderer__the_usual_request__the_first_renderer_without_drf(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("DRF's negotiation was asked")

    monkeypatch.setattr(DefaultContentNegotiation, "select_renderer", refuse)
    assert _choice(UsualRequestNegotiation(), "/api/v1/decisions", "*/*", [JSONRenderer()], None) == (
        "JSONRenderer",
        "application/json",
    )
