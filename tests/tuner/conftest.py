from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _private_cache(settings: Any) -> None:
    """A per-process cache: the default file cache is shared with every other test process on the machine,
    and a live config cached by another run's agent of the same primary key would leak in."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tuner"}}
