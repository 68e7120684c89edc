"""Fixtures for the client's unit tests: a fake server on a free port and a spool folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_loopsite import FakeServer


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer().start()
    yield fake
    fake.stop()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"
