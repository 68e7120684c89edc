"""The client's retry and spool rules pinned at their edges: Retry-After's cap, the backoff's doubling and jitter,
a spool exactly full and one byte over, a segment rotated at exactly its size, a record larger than a batch."""

from __future__ import annotations

import json
import marshal
import os
import random
from pathlib import Path
from typing import Any

import pytest

from loopsite_client._http import MAX_RETRY_AFTER, Backoff, Response, retry_after_seconds
from loopsite_client.spool import HEADER, Spool, SpoolFull, SpoolInUse, dump, record

DATE = "Wed, 21 Oct 2015 07:28:10 GMT"
AT = 1445412490.0  # DATE as a timestamp


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        (" 120 ", 120.0),
        ("600", 600.0),
        ("601", MAX_RETRY_AFTER),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
    ],
)
def test_retry_after_seconds__delta_seconds__capped_at_ten_minutes(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


@pytest.mark.parametrize(
    ("now", "seconds"),
    [(AT - 30, 30.0), (AT, 0.0), (AT + 30, 0.0), (AT - 600, 600.0), (AT - 601, MAX_RETRY_AFTER)],
)
def test_retry_after_seconds__http_date__from_now_never_negative_capped(now: float, seconds: float) -> None:
    assert retry_after_seconds(f" {DATE} ", now=now) == seconds


def test_retry_after_seconds__http_date_without_now__from_the_clock() -> None:
    assert retry_after_seconds(DATE) == 0.0  # long past
    assert retry_after_seconds("Fri, 01 Jan 2100 00:00:00 GMT") == MAX_RETRY_AFTER


def test_response_retry_after__from_its_header() -> None:
    assert Response(503, {"retry-after": "7"}, b"").retry_after == 7.0
    assert Response(503, {}, b"").retry_after is None


class Edge(random.Random):
    """A generator that always draws the top (or bottom) of the range, and remembers the ranges."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return b if self.top else a


def test_backoff__doubles_from_base_up_to_the_cap__drawn_in_its_upper_half() -> None:
    high, low = Backoff(base=1.0, cap=8.0, rng=Edge(True)), Backoff(base=1.0, cap=8.0, rng=Edge(False))
    assert [high.next() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert [low.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert high.attempt == 6


def test_backoff__attempts_stop_counting_at_32() -> None:
    backoff = Backoff(base=1e-12, cap=1e9, rng=Edge(True))
    for _ in range(40):
        backoff.next()
    assert backoff.attempt == 32
    assert backoff.next() == pytest.approx(1e-12 * 2**32)


def test_backoff__reset__starts_again_from_base() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=Edge(True))
    backoff.next(), backoff.next()
    backoff.reset()
    assert (backoff.attempt, backoff.next()) == (0, 1.0)


def test_backoff__retry_after__never_shorter_plus_up_to_a_tenth_of_it() -> None:
    rng = Edge(True)
    backoff = Backoff(base=1.0, cap=8.0, rng=rng)
    assert backoff.next(retry_after=10.0) == 11.0
    assert rng.ranges[-1] == (0, 1.0)
    # A short Retry-After gets at least 0.05 s of jitter; here the backoff's own delay is the longer.
    assert backoff.next(retry_after=0.2) == 2.0
    assert rng.ranges[-1] == (0, 0.05)
    assert Backoff(base=1.0, cap=8.0, rng=Edge(False)).next(retry_after=3.0) == 3.0


def test_backoff__no_generator_given__its_own() -> None:
    assert 0.5 <= Backoff(base=1.0, cap=8.0).next() <= 1.0


# --- The spool -----------------------------------------------------------------------------------------------


def size_of(entry: Any) -> int:
    return len(record(entry))


def test_record__length_prefixed_marshal() -> None:
    data = record({"id": "a"})
    assert HEADER.unpack_from(data, 0) == (len(data) - HEADER.size,)
    assert marshal.loads(data[HEADER.size :]) == {"id": "a"}


def test_spool_append__exactly_full__accepted_one_byte_more__refused(tmp_path: Path) -> None:
    one = record("x" * 10)
    spool = Spool(tmp_path, segment_bytes=10_000, max_bytes=2 * len(one))
    spool.append(one)
    spool.append(one)
    assert spool.pending_bytes == 2 * len(one)
    with pytest.raises(SpoolFull, match=f"the spool holds {2 * len(one)} bytes of unsent entries"):
        spool.append(record(""))


def test_spool_append__segment_reaches_its_size_exactly__rotated(tmp_path: Path) -> None:
    one = record("x" * 10)
    spool = Spool(tmp_path, segment_bytes=2 * len(one), max_bytes=10_000)
    first = spool.write_position[0]
    assert spool.append(one) == (first, len(one))
    assert spool.write_position == (first, len(one))  # one byte short of the size: not rotated
    assert spool.append(one) == (first, 2 * len(one))
    assert spool.write_position == (first + 1, 0)
    assert sorted(p.name for p in (tmp_path / "log").glob("*.spool")) == [
        f"{first:012d}.spool",
        f"{first + 1:012d}.spool",
    ]


def test_spool_append__after_close__refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=10_000, max_bytes=10_000)
    spool.close()
    with pytest.raises(OSError, match="^the spool is closed$"):
        spool.append(record("x"))
    with pytest.raises(ValueError, match="^the spool is closed$"):
        spool.read(max_lines=1, max_bytes=100)


def filled(tmp_path: Path, entries: list[Any], **kw: Any) -> Spool:
    spool = Spool(tmp_path, segment_bytes=kw.get("segment_bytes", 10_000), max_bytes=10_000)
    for e in entries:
        spool.append(record(e))
    return spool


def test_spool_read__at_most_max_lines(tmp_path: Path) -> None:
    spool = filled(tmp_path, ["a", "b", "c"])
    batch = spool.read(max_lines=2, max_bytes=10_000)
    assert batch is not None and batch.entries == ["a", "b"]
    assert batch.start == (spool.acked[0], 0) and batch.end == (spool.acked[0], 2 * size_of("a"))


def test_spool_read__max_bytes_exactly_two_records__both_one_byte_less__one(tmp_path: Path) -> None:
    spool = filled(tmp_path, ["a", "b", "c"])
    two = 2 * size_of("a")
    assert spool.read(max_lines=10, max_bytes=two).entries == ["a", "b"]  # type: ignore[union-attr]
    assert spool.read(max_lines=10, max_bytes=two - 1).entries == ["a"]  # type: ignore[union-attr]


def test_spool_read__one_record_larger_than_max_bytes__read_alone(tmp_path: Path) -> None:
    spool = filled(tmp_path, ["x" * 100, "b"])
    batch = spool.read(max_lines=10, max_bytes=20)
    assert batch is not None and batch.entries == ["x" * 100]
    assert batch.end == (batch.start[0], size_of("x" * 100))


def test_spool_read__nothing_unsent__none(tmp_path: Path) -> None:
    spool = filled(tmp_path, [])
    assert spool.read(max_lines=10, max_bytes=100) is None


def test_spool_ack__moves_on_never_back_and_counts_what_is_pending(tmp_path: Path) -> None:
    spool = filled(tmp_path, ["a", "b", "c"])
    first = spool.read(max_lines=1, max_bytes=10_000)
    assert first is not None
    spool.ack(first.end)
    assert spool.acked == first.end and spool.pending_bytes == 2 * size_of("a")
    spool.ack(first.start)  # an older position is ignored
    assert spool.acked == first.end
    rest = spool.read(max_lines=10, max_bytes=10_000)
    assert rest is not None and rest.entries == ["b", "c"] and rest.start == first.end
    spool.ack(rest.end)
    assert spool.pending_bytes == 0
    assert (tmp_path / "log" / "ack").read_text() == f"{rest.end[0]:020d} {rest.end[1]:020d}\n"


def test_spool_read__closed_segment_answered__deleted_and_the_next_read(tmp_path: Path) -> None:
    one = size_of("a")
    spool = filled(tmp_path, ["a", "b", "c"], segment_bytes=2 * one)
    first = spool.acked[0]
    batch = spool.read(max_lines=10, max_bytes=10_000)
    assert batch is not None and batch.entries == ["a", "b"]
    spool.ack(batch.end)
    batch = spool.read(max_lines=10, max_bytes=10_000)
    assert batch is not None and batch.entries == ["c"] and batch.start == (first + 1, 0)
    assert not (tmp_path / "log" / f"{first:012d}.spool").exists()
    assert spool.pending_bytes == one


def test_spool_restart__unsent_entries_read_again_from_the_ack(tmp_path: Path) -> None:
    spool = filled(tmp_path, ["a", "b", "c"])
    batch = spool.read(max_lines=1, max_bytes=10_000)
    assert batch is not None
    spool.ack(batch.end)
    with spool.lock:
        spool.close()
    again = Spool(tmp_path, segment_bytes=10_000, max_bytes=10_000)
    assert again.pending_bytes == 2 * size_of("a")
    assert again.read(max_lines=10, max_bytes=10_000).entries == ["b", "c"]  # type: ignore[union-attr]


def test_spool_restart__torn_last_record__cut(tmp_path: Path) -> None:
    spool = filled(tmp_path, ["a", "b" * 30])
    segment = spool.write_position[0]
    with spool.lock:
        spool.close()
    path = tmp_path / "log" / f"{segment:012d}.spool"
    whole = path.read_bytes()
    path.write_bytes(whole + record("c")[:-1])
    again = Spool(tmp_path, segment_bytes=10_000, max_bytes=10_000)
    assert path.read_bytes() == whole
    assert again.read(max_lines=10, max_bytes=10_000).entries == ["a", "b" * 30]  # type: ignore[union-attr]


def test_spool_restart__header_alone_torn__cut(tmp_path: Path) -> None:
    spool = filled(tmp_path, ["a"])
    segment = spool.write_position[0]
    with spool.lock:
        spool.close()
    path = tmp_path / "log" / f"{segment:012d}.spool"
    whole = path.read_bytes()
    path.write_bytes(whole + b"\x05\x00")
    Spool(tmp_path, segment_bytes=10_000, max_bytes=10_000)
    assert path.read_bytes() == whole


def test_spool_close__everything_answered__no_segment_left(tmp_path: Path) -> None:
    spool = filled(tmp_path, ["a"])
    batch = spool.read(max_lines=10, max_bytes=10_000)
    assert batch is not None
    spool.ack(batch.end)
    with spool.lock:
        spool.close()
    assert list((tmp_path / "log").glob("*.spool")) == [] or all(
        p.stat().st_size == 0 for p in (tmp_path / "log").glob("*.spool")
    )


def test_spool_dead_letter__one_json_line_each(tmp_path: Path) -> None:
    spool = filled(tmp_path, [])
    spool.dead_letter({"id": "a"}, status="invalid", errors={"x": 1}, http_status=200)
    spool.dead_letter({"id": "b"}, status="refused", errors=None, http_status=None)
    lines = [json.loads(line) for line in spool.dead_letter_path.read_text().splitlines()]
    assert [(d["entry"], d["status"], d["errors"], d["httpStatus"]) for d in lines] == [
        ({"id": "a"}, "invalid", {"x": 1}, 200),
        ({"id": "b"}, "refused", None, None),
    ]
    assert all(d["deadLetteredAt"].endswith("+00:00") for d in lines)


def test_dump__the_unsent_entries_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = filled(tmp_path, [{"id": "a"}, {"id": "b"}, {"id": "c"}], segment_bytes=2 * size_of({"id": "a"}))
    batch = spool.read(max_lines=1, max_bytes=10_000)
    assert batch is not None
    spool.ack(batch.end)
    assert dump(tmp_path) == 2
    assert capsys.readouterr().out == '{"id": "b"}\n{"id": "c"}\n'


def test_spool__its_files__named_and_private_to_the_user(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "a" / "b", segment_bytes=10_000, max_bytes=10_000)
        spool.append(record("x"))
        spool.dead_letter("x", status="invalid", errors=None, http_status=None)
    finally:
        os.umask(old)
    folder = tmp_path / "a" / "b"
    assert (spool.directory, spool.dead_letter_path) == (folder, folder / "dead-letter.jsonl")
    files = [folder / "lock", folder / "log" / "ack", folder / "log" / "000000000001.spool", spool.dead_letter_path]
    assert [oct(f.stat().st_mode & 0o777) for f in files] == ["0o644"] * 4


def test_spool__a_second_on_the_same_folder__refused(tmp_path: Path) -> None:
    filled(tmp_path, [])
    with pytest.raises(SpoolInUse) as caught:
        Spool(tmp_path, segment_bytes=10_000, max_bytes=10_000)
    assert str(caught.value) == f"{tmp_path} is used by another loopsite client"


def test_spool_start__fresh__first_segment_and_nothing_pending(tmp_path: Path) -> None:
    spool = filled(tmp_path, [])
    assert (spool.write_position, spool.acked, spool.pending_bytes) == ((1, 0), (1, 0), 0)


def test_spool_start__ack_past_every_segment__writes_after_it(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "ack").write_text("00000000000000000005 00000000000000000007\n")
    spool = Spool(tmp_path, segment_bytes=10_000, max_bytes=10_000)
    assert (spool.write_position, spool.acked, spool.pending_bytes) == ((6, 0), (5, 7), 0)


def test_spool_start__ack_in_a_segment_already_deleted__from_the_oldest_left(tmp_path: Path) -> None:
    one = size_of("a")
    spool = filled(tmp_path, ["a", "b", "c", "d"], segment_bytes=2 * one)
    with spool.lock:
        spool.close()
    (tmp_path / "log" / "000000000001.spool").unlink()
    (tmp_path / "log" / "ack").write_text("00000000000000000001 00000000000000000005\n")
    again = Spool(tmp_path, segment_bytes=2 * one, max_bytes=10_000)
    assert again.acked == (2, 0)
    assert (tmp_path / "log" / "ack").read_text() == "00000000000000000002 00000000000000000000\n"
    assert again.read(max_lines=10, max_bytes=10_000).entries == ["c", "d"]  # type: ignore[union-attr]


def test_spool_start__segments_behind_the_ack__deleted(tmp_path: Path) -> None:
    one = size_of("a")
    spool = filled(tmp_path, ["a", "b", "c"], segment_bytes=2 * one)
    with spool.lock:
        spool.close()
    (tmp_path / "log" / "ack").write_text("00000000000000000002 00000000000000000000\n")
    again = Spool(tmp_path, segment_bytes=2 * one, max_bytes=10_000)
    assert not (tmp_path / "log" / "000000000001.spool").exists()
    assert again.pending_bytes == one


def test_spool_append__short_writes__the_whole_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import loopsite_client.spool as spool_module

    real = os.write
    monkeypatch.setattr(spool_module.os, "write", lambda fd, data: real(fd, bytes(data[:3])))
    spool = filled(tmp_path, ["abcdefgh", "ij"])
    assert spool.read(max_lines=10, max_bytes=10_000).entries == ["abcdefgh", "ij"]  # type: ignore[union-attr]


def test_spool_append__write_fails_midway__the_partial_record_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import loopsite_client.spool as spool_module

    spool = filled(tmp_path, ["a"])
    real = os.write
    calls: list[int] = []

    def failing(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError("disk full")
        return real(fd, bytes(data[:3]))

    monkeypatch.setattr(spool_module.os, "write", failing)
    with pytest.raises(OSError, match="disk full"):
        spool.append(record("bcdefgh"))
    monkeypatch.setattr(spool_module.os, "write", real)
    path = tmp_path / "log" / "000000000001.spool"
    assert path.stat().st_size == size_of("a") and spool.pending_bytes == size_of("a")
    spool.append(record("z"))
    assert spool.read(max_lines=10, max_bytes=10_000).entries == ["a", "z"]  # type: ignore[union-attr]


def test_spool_read__max_bytes_of_one_header__the_record_alone(tmp_path: Path) -> None:
    spool = filled(tmp_path, ["x" * 10, "y"])
    batch = spool.read(max_lines=10, max_bytes=HEADER.size)
    assert batch is not None and batch.entries == ["x" * 10]


def test_spool_read__a_closed_segment_gone__skipped_to_the_next(tmp_path: Path) -> None:
    one = size_of("a")
    spool = filled(tmp_path, ["a", "b", "c"], segment_bytes=2 * one)
    (tmp_path / "log" / "000000000001.spool").unlink()
    batch = spool.read(max_lines=10, max_bytes=10_000)
    assert batch is not None and batch.entries == ["c"] and batch.start == (2, 0)
    assert spool.pending_bytes == 3 * one  # counted when written; the lost segment is not counted off


def test_spool_read__garbage_after_the_last_record_of_a_closed_segment__counted_off(tmp_path: Path) -> None:
    one = size_of("a")
    spool = filled(tmp_path, ["a", "b", "c"], segment_bytes=2 * one)
    with spool.lock:
        spool.close()
    with (tmp_path / "log" / "000000000001.spool").open("ab") as f:
        f.write(b"\x01\x00")  # not the last segment: not cut at start, and counted as pending
    again = Spool(tmp_path, segment_bytes=2 * one, max_bytes=10_000)
    assert again.pending_bytes == 3 * one + 2
    first = again.read(max_lines=10, max_bytes=10_000)
    assert first is not None and first.entries == ["a", "b"]
    again.ack(first.end)
    rest = again.read(max_lines=10, max_bytes=10_000)
    assert rest is not None and rest.entries == ["c"]
    assert again.pending_bytes == one


def test_spool_ack__a_position_in_another_segment__nothing_counted_off(tmp_path: Path) -> None:
    spool = filled(tmp_path, ["a"])
    spool.ack((spool.acked[0] + 1, 3))
    assert spool.pending_bytes == size_of("a")


def test_spool_close__twice__no_error(tmp_path: Path) -> None:
    spool = filled(tmp_path, ["a"])
    with spool.lock:
        spool.close()
        spool.close()


def test_dump__no_ack_file__everything_and_torn_records_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = filled(tmp_path, [{"id": "a"}, {"id": "b" * 30, "raw": b"x"}])
    with spool.lock:
        spool.close()
    (tmp_path / "log" / "ack").unlink()
    with (tmp_path / "log" / "000000000001.spool").open("ab") as f:
        f.write(record("torn")[:-1])
    assert dump(tmp_path) == 2
    assert capsys.readouterr().out == '{"id": "a"}\n' + json.dumps({"id": "b" * 30, "raw": repr(b"x")}) + "\n"


def test_dump__an_old_segment_behind_the_ack__skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = size_of({"id": "a"})
    spool = filled(tmp_path, [{"id": "a"}, {"id": "b"}, {"id": "c"}], segment_bytes=2 * one)
    with spool.lock:
        spool.close()
    (tmp_path / "log" / "ack").write_text("00000000000000000002 00000000000000000000\n")
    assert dump(tmp_path) == 1
    assert capsys.readouterr().out == '{"id": "c"}\n'


def test_spool_dead_letter__compact_json_and_anything_else_as_text(tmp_path: Path) -> None:
    spool = filled(tmp_path, [])
    spool.dead_letter({"raw": b"x"}, status="invalid", errors=None, http_status=400)
    line = spool.dead_letter_path.read_text()
    assert line.endswith(',"status":"invalid","httpStatus":400,"errors":null,"entry":{"raw":"b\'x\'"}}\n')
