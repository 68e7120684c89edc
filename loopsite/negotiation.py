"""The API's content negotiation: DRF's, answered at once for the usual request."""

from collections.abc import Iterable
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation


class UsualRequestNegotiation(DefaultContentNegotiation):
    """A request with no query string (so no ``?format=``), no format suffix and an Accept header that takes
    anything (or none, which DRF reads as ``*/*``) gets the view's first renderer, as DRF would give it, without
    parsing the header into media types and ranking them: a twentieth of a logged decision's server time. Any other
    request is negotiated by DRF (a 406 for an Accept the API cannot answer, a 404 for an unknown format)."""

    def select_renderer(self, request: Any, renderers: Iterable[Any], format_suffix: str | None = None) -> Any:
        renderers = list(renderers)
        meta = request.META
        if renderers and not format_suffix and not meta.get("QUERY_STRING") and meta.get("HTTP_ACCEPT", "*/*") == "*/*":
            first = renderers[0]
            return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
