"""Input the database cannot store, refused with a 400 that names the field, before anything is written.

PostgreSQL's text refuses the NUL character and UTF-8 has no unpaired surrogates: a string carrying either would
fail at the database as a 500 and, in a batch, sink the valid entries beside it. JSON nested without bound would
exhaust the parser's stack. Every path that reads input checks here: the decision parser per entry (so a bad
entry is ``invalid`` in its slot), the API's JSON parser for every other body, and the middleware for paths and
query strings.
"""

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from loopsite.exceptions import ValidationFailed

# The deepest JSON any body of the API's schema needs is 4 (batch > entry > context > features); room to spare.
MAX_DEPTH = 32


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (such as \\ud800), which is not valid Unicode"
    return None


def tree_check(value: Any, path: str, *, depth: int = 0) -> None:
    """Refuse any string (key or value) in ``value`` that cannot be stored, and nesting past ``MAX_DEPTH``.
    ``path`` names the field in the error (dotted, as sent)."""
    if depth > MAX_DEPTH:
        raise ValidationFailed(f"{path or 'body'} nests deeper than {MAX_DEPTH} levels", field=path or "body")
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise ValidationFailed(f"{path or 'body'} {problem}", field=path or "body")
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key) if isinstance(key, str) else None
            if problem:
                raise ValidationFailed(f"{path or 'body'} has a name that {problem}", field=path or "body")
            tree_check(item, f"{path}.{key}" if path else str(key), depth=depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            tree_check(item, f"{path}[{i}]" if path else f"[{i}]", depth=depth + 1)


def json_load(body: bytes | str) -> Any:
    """Decode a JSON body; malformed or too deeply nested JSON is a 400, never a crash of the parser."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValidationFailed(f"body nests deeper than {MAX_DEPTH} levels", field="body") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"body is not valid JSON: {exc}", field="body") from None


class CheckedJSONParser(JSONParser):
    """DRF's JSON parser for every body but the decision log's own: the same refusals, as a 400."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            data = json_load(raw) if raw else {}
            tree_check(data, "")
        except ValidationFailed as exc:
            raise ParseError(exc.message) from None
        return data


class RefuseUnstorableText:
    """Paths and query strings with a NUL or an unpaired surrogate get a 400 before any view runs."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = text_problem(request.path)
        field = "path"
        if problem is None:
            for name, values in request.GET.lists():
                problem = text_problem(name) or next((p for v in values if (p := text_problem(v))), None)
                if problem:
                    field = name if not text_problem(name) else "query"
                    break
        if problem is None:
            return self.get_response(request)
        message = f"{field} {problem}"
        if request.path.startswith("/api/"):
            return JsonResponse({"error": {"code": "invalid", "message": message, "field": field}}, status=400)
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
