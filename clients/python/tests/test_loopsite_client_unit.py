"""The client against a fake server: delivery, retries, dead letters, the spool and the config."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fake_loopsite import CONFIG, KEY, FakeServer, entry, free_port

from loopsite_client import Client, ClientClosed, Config, ConfigUnavailable
from loopsite_client._http import Backoff, retry_after_seconds
from loopsite_client._ids import IdMaker
from loopsite_client.spool import SpoolInUse, dump, record

FAST: dict[str, Any] = {"linger": 0.02, "max_backoff": 0.2, "poll_interval": 0.2, "start_timeout": 1.0, "timeout": 2.0}


def dead_letters(client: Client) -> list[dict]:
    path = client.dead_letter_path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- Pure parts ---------------------------------------------------------------------------------------------


def test_decide__strongest_action_whose_threshold_is_reached__weakest_below_all():
    config = Config.from_json(CONFIG, etag=None)
    assert config.decide(0.9) == ("escalate", "escalate_threshold", 0.85)
    assert config.decide(0.85) == ("escalate", "escalate_threshold", 0.85)
    assert config.decide(0.7) == ("flag", "flag_threshold", 0.6)
    assert config.decide(0.1) == ("auto-resolve", "flag_threshold", 0.6)


def test_ids__uuid7_shaped_and_strictly_increasing():
    make = IdMaker()
    ids = [make() for _ in range(20_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 36 and i[14] == "7" and i[19] in "89ab" for i in ids[:100])


def test_retry_after__seconds_or_http_date():
    assert retry_after_seconds("5") == 5.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert Backoff(base=1, cap=10).next(retry_after=3) >= 3


# --- Delivery -----------------------------------------------------------------------------------------------


def test_log_then_flush__every_entry_stored_once_with_its_fields_filled(server: FakeServer, spool: Path):
    with Client(server.url, KEY, spool, **FAST) as client:
        ids = [client.log(entry()) for _ in range(1200)]
        assert client.flush(timeout=10)
    assert sorted(server.stored) == sorted(ids) and len(ids) == len(set(ids))
    assert ids == sorted(ids)  # time-ordered
    stored = server.stored[ids[0]]
    assert stored["agentId"] == "triage" and stored["configVersion"] == 1 and stored["timestamp"].endswith("+00:00")
    assert len(server.received) == 1200  # no resend while the server answered
    assert list((spool / "log").glob("*.spool")) == []  # answered, closed: no segment left behind


def test_log__returns_before_anything_is_sent(server: FakeServer, spool: Path):
    with Client(server.url, KEY, spool, **{**FAST, "linger": 5.0}) as client:
        entry_id = client.log(entry())
        assert server.stored == {}
        assert client.flush(timeout=5)
        assert entry_id in server.stored


def test_invalid_entry__dead_lettered_with_the_servers_message__not_retried(server: FakeServer, spool: Path):
    with Client(server.url, KEY, spool, **FAST) as client:
        good = client.log(entry())
        bad = client.log(entry(action="shout"))
        assert client.flush(timeout=5)
        time.sleep(0.3)
        letters = dead_letters(client)
        assert client.stats()["dead_lettered"] == 1
    assert good in server.stored and bad not in server.stored
    assert server.received.count(bad) == 1
    assert letters[0]["entry"]["id"] == bad
    assert letters[0]["status"] == "invalid" and letters[0]["errors"] == {"decision.action": "not an action"}


def test_poison_entry_refusing_the_whole_batch__halved_until_only_it_is_dead_lettered(server: FakeServer, spool: Path):
    def refuse_poison(path: str, body: dict | None) -> tuple[int, dict[str, str], bytes] | None:
        if body and any(e["sessionId"] == "poison" for e in body.get("entries", [])):
            return 400, {}, b'{"error":{"code":"invalid","message":"sessionId: NUL byte","field":"sessionId"}}'
        return None

    server.overrides.append(refuse_poison)
    with Client(server.url, KEY, spool, **FAST) as client:
        ids = [client.log({**entry(), "sessionId": "poison" if i == 37 else "s"}) for i in range(100)]
        assert client.flush(timeout=10)
        letters = dead_letters(client)
    assert len(server.stored) == 99 and ids[37] not in server.stored
    assert [d["entry"]["id"] for d in letters] == [ids[37]]
    assert letters[0]["httpStatus"] == 400 and letters[0]["errors"]["error"]["field"] == "sessionId"


def test_503_with_retry_after__client_waits_that_long_then_delivers(server: FakeServer, spool: Path):
    calls: list[float] = []

    def unavailable_once(path: str, body: dict | None) -> tuple[int, dict[str, str], bytes] | None:
        if path.endswith("/batch") and not calls:
            calls.append(time.monotonic())
            return 503, {"Retry-After": "1"}, b'{"error":{"code":"unavailable","message":"db","field":null}}'
        if path.endswith("/batch"):
            calls.append(time.monotonic())
        return None

    server.overrides.append(unavailable_once)
    with Client(server.url, KEY, spool, **FAST) as client:
        entry_id = client.log(entry())
        assert client.flush(timeout=10)
    assert entry_id in server.stored
    assert calls[1] - calls[0] >= 1.0


def test_server_down_then_up__spooled_entries_replayed_in_order_once(spool: Path, capsys: pytest.CaptureFixture):
    port = free_port()
    down = FakeServer(port)
    with Client(down.url, KEY, spool, **FAST) as client:
        ids = [client.log(entry()) for _ in range(300)]
        assert client.flush(timeout=0.5) is False
        assert client.stats()["pending_bytes"] > 0
        assert dump(spool) == 300  # python -m loopsite_client.spool DIR: the unsent entries as JSON lines
        assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == ids
        up = FakeServer(port).start()
        try:
            assert client.flush(timeout=10)
        finally:
            up.stop()
    assert up.received == ids  # in the order logged, each once


def _killed_child(spool: Path, *, write_through: bool, pause: float) -> tuple[list[str], int]:
    """A child process logs 500 entries while the server is unreachable, waits ``pause`` seconds and is killed
    with SIGKILL. Returns the ids it logged and how many were still queued in memory just before."""
    script = f"""
import os, signal, sys, time
sys.path[:0] = {[str(Path(__file__).parent), *sys.path]!r}
from fake_loopsite import KEY, entry
from loopsite_client import Client
client = Client("http://127.0.0.1:{free_port()}", KEY, {str(spool)!r}, start_timeout=0.2, write_through={write_through})
ids = [client.log(entry()) for _ in range(500)]
time.sleep({pause})
print(",".join(ids), client.stats()["queued"], flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    ids, queued = child.stdout.split()
    return ids.split(","), int(queued)


def test_killed_process__write_through__every_entry_logged_is_sent_by_the_next_client(server: FakeServer, spool: Path):
    logged, queued = _killed_child(spool, write_through=True, pause=0)
    assert len(logged) == 500 and queued == 0
    with Client(server.url, KEY, spool, **FAST) as client:
        assert client.flush(timeout=10)
    assert sorted(server.stored) == sorted(logged) and len(server.received) == 500


def test_killed_process__queued__loses_at_most_what_was_still_in_memory(server: FakeServer, spool: Path):
    logged, queued = _killed_child(spool, write_through=False, pause=0.3)  # 60 writer intervals
    assert queued == 0  # the writer had moved everything to disk
    with Client(server.url, KEY, spool, **FAST) as client:
        assert client.flush(timeout=10)
    assert sorted(server.stored) == sorted(logged)


def test_small_segments__rotated_delivered_and_deleted(server: FakeServer, spool: Path):
    with Client(server.url, KEY, spool, segment_bytes=4096, **FAST) as client:
        ids = [client.log(entry()) for _ in range(2000)]
        assert client.flush(timeout=20)
    assert len(server.stored) == 2000 and server.received == ids
    assert len(list((spool / "log").glob("*.spool"))) <= 2


def test_torn_last_line__cut_at_start_and_the_whole_lines_sent(server: FakeServer, spool: Path):
    log_dir = spool / "log"
    log_dir.mkdir(parents=True)
    whole = {**entry(), "id": "whole-1", "agentId": "triage", "timestamp": "2026-03-02T08:00:00+00:00"}
    torn = record({**whole, "id": "torn"})
    (log_dir / "000000000001.spool").write_bytes(record(whole) + torn[: len(torn) // 2])
    with Client(server.url, KEY, spool, **FAST) as client:
        assert client.flush(timeout=5)
    assert list(server.stored) == ["whole-1"]


def test_spool_full__entry_counted_as_dropped_and_flush_says_false(spool: Path):
    client = Client(f"http://127.0.0.1:{free_port()}", KEY, spool, max_spool_bytes=2000, **FAST)
    for _ in range(20):
        client.log(entry())
    assert client.flush(timeout=0.1) is False
    assert client.stats()["dropped"] > 0
    client.close(timeout=0.1)


def test_second_client_on_the_same_spool__refused(server: FakeServer, spool: Path):
    with Client(server.url, KEY, spool, **FAST), pytest.raises(SpoolInUse):
        Client(server.url, KEY, spool, **FAST)


def test_log_after_close__raises(server: FakeServer, spool: Path):
    client = Client(server.url, KEY, spool, **FAST)
    client.close()
    with pytest.raises(ClientClosed):
        client.log(entry())


# --- Config -------------------------------------------------------------------------------------------------


def test_config__read_at_start_then_new_version_picked_up_by_the_poller(server: FakeServer, spool: Path):
    with Client(server.url, KEY, spool, **FAST) as client:
        assert client.config().version == 1 and client.config().agent_id == "triage"
        server.config = {**CONFIG, "version": 2, "thresholds": {"flag_threshold": 0.65, "escalate_threshold": 0.85}}
        deadline = time.monotonic() + 5
        while client.config().version != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.config().thresholds["flag_threshold"] == 0.65
        assert client.decide(0.62) == ("auto-resolve", "flag_threshold", 0.65)
        # An entry decided under version 1 just before the change still names version 1.
        entry_id = client.log(entry(thresholdUsed=0.6, thresholdName="flag_threshold"))
        assert client.flush(timeout=5)
    assert server.stored[entry_id]["configVersion"] == 1
    polls = [h for m, p, h in server.requests if p == "/api/v1/config"]
    assert any(h.get("if-none-match") == '"triage-v1"' for h in polls)


def test_config__server_down_at_start__last_good_copy_from_disk(server: FakeServer, spool: Path):
    with Client(server.url, KEY, spool, **FAST):
        pass
    server.stop()
    began = time.monotonic()
    with Client(server.url, KEY, spool, **FAST) as client:
        assert time.monotonic() - began < 1.0
        config = client.config()
        assert config.version == 1 and config.from_disk
        assert client.decide(0.9) == ("escalate", "escalate_threshold", 0.85)


def test_config__nothing_on_disk_and_server_down__unavailable_until_it_answers(spool: Path):
    port = free_port()
    with Client(f"http://127.0.0.1:{port}", KEY, spool, **FAST) as client:
        with pytest.raises(ConfigUnavailable):
            client.config()
        entry_id = client.log(entry())  # logged without agentId: it is added once the server says which agent
        late = FakeServer(port).start()
        try:
            assert client.flush(timeout=10)
            assert client.config().version == 1
        finally:
            late.stop()
    assert late.stored[entry_id]["agentId"] == "triage"


def test_config__server_accepts_but_never_answers__config_never_waits(server: FakeServer, spool: Path):
    with Client(server.url, KEY, spool, **FAST):
        pass
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(100)  # connections are accepted by the kernel; nothing ever reads or answers
    try:
        began = time.monotonic()
        client = Client(f"http://127.0.0.1:{hole.getsockname()[1]}", KEY, spool, **{**FAST, "start_timeout": 0.5})
        assert time.monotonic() - began < 3.0  # the 0.5 s start timeout, on a busy machine
        worst = 0.0
        for _ in range(2000):
            t = time.perf_counter()
            client.config()
            client.decide(0.7)
            client.log(entry())
            worst = max(worst, time.perf_counter() - t)
        assert worst < 0.25  # the network timeouts are seconds: nothing here waited on them
        assert client.config().version == 1
        client.close(timeout=0.2)
    finally:
        hole.close()


def test_config__other_keys_copy_on_disk__not_used(server: FakeServer, spool: Path):
    with Client(server.url, KEY, spool, **FAST):
        pass
    server.stop()
    with Client(server.url, "lsa_other_key", spool, **FAST) as client, pytest.raises(ConfigUnavailable):
        client.config()


def test_unserializable_value__written_as_text_and_the_server_judges_it(server: FakeServer, spool: Path):
    class Odd:
        def __str__(self) -> str:
            return "odd"

    with Client(server.url, KEY, spool, **FAST) as client:
        entry_id = client.log({**entry(), "context": {"inputHash": "h", "features": {"x": Odd()}, "matchedRules": []}})
        assert client.flush(timeout=5)
    assert server.stored[entry_id]["context"]["features"] == {"x": "odd"}


def test_pending_bytes__zero_after_everything_is_acknowledged(server: FakeServer, spool: Path):
    with Client(server.url, KEY, spool, **FAST) as client:
        for _ in range(50):
            client.log(entry())
        assert client.flush(timeout=5)
        assert client.stats()["pending_bytes"] == 0


def test_queue__writer_behind__never_more_than_queue_size_only_in_memory(spool: Path):
    client = Client(f"http://127.0.0.1:{free_port()}", KEY, spool, queue_size=500, **FAST)
    ids = [client.log(entry()) for _ in range(20_000)]
    assert client.stats()["max_queued"] <= 500
    client.flush(timeout=0.1)  # the rest of the queue goes to disk
    assert client.stats()["queued"] == 0 and client.stats()["logged"] == len(ids)
    client.close(timeout=0.1)
