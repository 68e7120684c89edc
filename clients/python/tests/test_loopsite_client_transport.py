"""A transport of one's own, and the client without threads: what a simulation or a batch job runs on."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from fake_loopsite import CONFIG, KEY, FakeServer, entry

from loopsite_client import Client, Response, Transport


class InMemory:
    """A transport that hands each request to the fake server's logic directly: no socket, no HTTP."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.calls: list[tuple[str, str, str]] = []  # (method, path, thread name)
        self.failures = 0  # the next requests that fail as an unreachable server would
        self.closed = False

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        self.calls.append((method, path, threading.current_thread().name))
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("down")
        lower = {k.lower(): v for k, v in (headers or {}).items()}
        status, extra, payload = self.server.answer(method, path, lower, body or b"")
        return Response(status, {k.lower(): v for k, v in extra.items()}, payload)

    def close(self) -> None:
        self.closed = True


SYNC: dict[str, Any] = {"poll_interval": None, "background": False, "max_backoff": 0.05}


def test_transport__satisfies_the_protocol():
    transport: Transport = InMemory(FakeServer())
    assert callable(transport.request)


def test_custom_transport__background_threads__requests_carry_the_key_and_entries_are_stored(spool: Path):
    server = FakeServer()  # never started: no port is opened
    transport = InMemory(server)
    with Client("inproc://", KEY, spool, transport=transport, linger=0.01, poll_interval=0.05) as client:
        assert client.config().version == 1
        ids = [client.log(entry()) for _ in range(50)]
        assert client.flush(timeout=5)
    assert sorted(server.stored) == sorted(ids)
    assert all(h["authorization"] == f"Bearer {KEY}" for _m, _p, h in server.requests)
    posts = [h for _m, p, h in server.requests if p.endswith("/batch")]
    assert posts and all(h["content-type"] == "application/json" for h in posts)
    assert transport.closed  # close() closes the transport it was given


def test_background_false__no_threads__log_sends_nothing__flush_sends_on_the_callers_thread(spool: Path):
    server = FakeServer()
    transport = InMemory(server)
    before = set(threading.enumerate())
    client = Client("inproc://", KEY, spool, transport=transport, batch_size=1000, **SYNC)
    assert [t.name for t in set(threading.enumerate()) - before if t.name.startswith("loopsite-client")] == []
    ids = [client.log(entry()) for _ in range(2500)]
    assert server.stored == {}  # nothing sent before flush()
    assert client.flush(timeout=5)
    assert sorted(server.stored) == sorted(ids)
    posts = [c for c in transport.calls if c[1].endswith("/batch")]
    assert len(posts) == 3  # 2,500 entries in batches of at most 1,000
    assert {name for _m, _p, name in transport.calls} == {threading.current_thread().name}
    assert client.close()
    assert client.stats()["sent"] == 2500 and client.stats()["dead_lettered"] == 0


def test_background_false__server_unreachable__flush_retries_then_delivers(spool: Path):
    server = FakeServer()
    transport = InMemory(server)
    with Client("inproc://", KEY, spool, transport=transport, **SYNC) as client:
        entry_id = client.log(entry())
        transport.failures = 2
        assert client.flush(timeout=5)
        assert client.stats()["retries"] == 2
    assert entry_id in server.stored


def test_background_false__server_down_past_the_timeout__flush_false__entry_kept_for_the_next_client(spool: Path):
    server = FakeServer()
    transport = InMemory(server)
    client = Client("inproc://", KEY, spool, transport=transport, **SYNC)
    entry_id = client.log(entry())
    transport.failures = 1000
    assert client.flush(timeout=0.3) is False
    assert client.close(timeout=0.1) is False
    transport.failures = 0
    with Client("inproc://", KEY, spool, transport=transport, **SYNC) as again:
        assert again.flush(timeout=5)
    assert entry_id in server.stored


def test_background_false__invalid_entry__dead_lettered(spool: Path):
    server = FakeServer()
    with Client("inproc://", KEY, spool, transport=InMemory(server), **SYNC) as client:
        good = client.log(entry())
        bad = client.log(entry(action="shred"))
        assert client.flush(timeout=5)
        assert client.stats()["dead_lettered"] == 1
        assert client.dead_letter_path.read_text().count(bad) == 1
    assert list(server.stored) == [good]


def test_poll_interval_none__config_changes_only_on_refresh(spool: Path):
    server = FakeServer()
    transport = InMemory(server)
    with Client("inproc://", KEY, spool, transport=transport, **SYNC) as client:
        assert client.config().version == 1
        server.config = {**CONFIG, "version": 2, "thresholds": {"flag_threshold": 0.65, "escalate_threshold": 0.85}}
        assert client.config().version == 1  # no poller
        assert client.refresh()
        assert client.config().version == 2 and client.decide(0.62)[0] == "auto-resolve"
        assert client.refresh()  # unchanged: a 304 keeps it
        assert client.config().version == 2
    polls = [h for m, p, h in server.requests if p == "/api/v1/config"]
    assert len(polls) == 3  # at start, and the two refreshes
    assert polls[-1].get("if-none-match") == '"triage-v2"'


def test_refresh__server_unreachable__false__config_kept(spool: Path):
    server = FakeServer()
    transport = InMemory(server)
    with Client("inproc://", KEY, spool, transport=transport, **SYNC) as client:
        transport.failures = 1
        assert client.refresh() is False
        assert client.config().version == 1
        assert "config read failed" in (client.last_error or "")


def test_log__keeps_the_callers_id_timestamp_and_config_version(spool: Path):
    server = FakeServer()
    given = {**entry(), "id": "sim-7-d0001-00042", "timestamp": "2026-03-02T09:15:00+00:00"}
    with Client("inproc://", KEY, spool, transport=InMemory(server), **SYNC) as client:
        assert client.log(given) == "sim-7-d0001-00042"
        assert client.log({**given, "id": "pinned", "configVersion": 7}) == "pinned"
        assert client.flush(timeout=5)
    stored = server.stored["sim-7-d0001-00042"]
    assert stored["timestamp"] == "2026-03-02T09:15:00+00:00"
    assert stored["agentId"] == "triage" and stored["configVersion"] == 1  # filled: they were absent
    assert server.stored["pinned"]["configVersion"] == 7


def test_poll_interval__zero_or_negative__refused(spool: Path):
    with pytest.raises(ValueError, match="poll_interval"):
        Client("inproc://", KEY, spool, transport=InMemory(FakeServer()), poll_interval=0)
