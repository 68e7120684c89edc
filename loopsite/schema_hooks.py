"""Post-processing of the OpenAPI schema for what every operation shares."""

from typing import Any


def throttled_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Every operation that takes credentials may be throttled (people/throttling.py): document its 429, with the
    same error body as its 401 and the ``Retry-After`` header."""
    for item in result.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses") if isinstance(operation, dict) else None
            if not responses or "401" not in responses:
                continue
            throttled: dict[str, Any] = {
                "description": "Too many requests for this agent, person or address; retry after `Retry-After`.",
                "headers": {
                    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds until the window ends."}
                },
            }
            if "content" in responses["401"]:
                throttled["content"] = responses["401"]["content"]
            responses.setdefault("429", throttled)
    return result
