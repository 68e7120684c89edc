"""The agent side of loopsite: read the live thresholds, decide, and log every decision without waiting."""

__version__ = "0.1.0"

from loopsite_client._http import Response, Transport, TransportError  # noqa: E402
from loopsite_client.client import Client, ClientClosed  # noqa: E402
from loopsite_client.config import Canary, Config, ConfigUnavailable, Shadow, canary_draw  # noqa: E402

__all__ = [
    "Canary",
    "Client",
    "ClientClosed",
    "Config",
    "ConfigUnavailable",
    "Response",
    "Shadow",
    "Transport",
    "TransportError",
    "__version__",
    "canary_draw",
]
