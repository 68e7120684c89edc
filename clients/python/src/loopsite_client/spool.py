"""The spool: every logged entry is appended here before ``log()`` returns, and sent from here.

Layout of the spool folder::

    lock                    flock'ed by the one client using the folder
    config.json             the last good config (see config.py)
    log/000000000001.spool  segments of records, in the order logged; append-only
    log/ack                 "<segment> <offset>": everything before it is answered by the server
    dead-letter.jsonl       entries the server refused, one JSON object a line, with its answer

A record is a 4-byte little-endian length and the entry in ``marshal`` format (version 4): a tenth of the cost of
JSON, which the sender thread writes instead, off the caller's path. ``python -m loopsite_client.spool DIR`` prints
a spool's unsent entries as JSON lines.

A record reaches the file with one ``write(2)`` before ``log()`` returns, so a process killed at any point loses
nothing it logged (the page cache survives the process; only a machine crash before the kernel writes the page
back can lose the last entries, and a torn last record is cut at the next start). The sender reads records from
the ack position, sends them, and moves the ack position past them once the server answered every one. A segment
wholly behind the ack position is deleted. A crash between the server's answer and the ack write sends those
entries again, which the server answers ``duplicate``: nothing is stored twice.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import struct
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux or macOS: no folder lock
    fcntl = None  # type: ignore[assignment]

Position = tuple[int, int]  # (segment number, byte offset)
ACK_FORMAT = "{:020d} {:020d}\n"
HEADER = struct.Struct("<I")
MARSHAL_VERSION = 4
SUFFIX = ".spool"


class SpoolFull(Exception):
    """The spool holds ``max_bytes`` of unsent entries already."""


class SpoolInUse(RuntimeError):
    """Another client (in this or another process) uses the same spool folder."""


@dataclass(frozen=True)
class Batch:
    entries: list[Any]
    start: Position
    end: Position


def _segment_name(number: int) -> str:
    return f"{number:012d}{SUFFIX}"


def record(entry: Any) -> bytes:
    """One spool record. Raises ``ValueError`` for values ``marshal`` cannot write."""
    payload = marshal.dumps(entry, MARSHAL_VERSION)
    return HEADER.pack(len(payload)) + payload


class Spool:
    def __init__(self, directory: Path, *, segment_bytes: int, max_bytes: int) -> None:
        self.directory = directory
        self.log_dir = directory / "log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.dead_letter_path = directory / "dead-letter.jsonl"
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self.lock = threading.Lock()  # the writer's; the ack position is also changed under it
        self._lock_fd = self._take_folder_lock(directory / "lock")

        segments = self._segments()
        ack = self._read_ack()
        if ack is not None and segments and ack[0] < segments[0]:
            ack = (segments[0], 0)  # its segment is gone: everything in it was answered
        for number in segments:
            if ack is not None and number < ack[0]:
                (self.log_dir / _segment_name(number)).unlink(missing_ok=True)
        segments = [n for n in segments if ack is None or n >= ack[0]]
        if segments:
            self._cut_torn_tail(self.log_dir / _segment_name(segments[-1]))
        # A new segment at every start: nothing is ever appended after a record written by an earlier process.
        self._write_segment = max([*segments, ack[0] if ack else 0]) + 1
        self._acked: Position = ack if ack is not None else ((segments[0], 0) if segments else (self._write_segment, 0))
        self._ack_fd = os.open(self.log_dir / "ack", os.O_RDWR | os.O_CREAT, 0o644)
        self._write_ack(self._acked)
        self._pending_bytes = sum((self.log_dir / _segment_name(n)).stat().st_size for n in segments) - (
            self._acked[1] if segments and self._acked[0] == segments[0] else 0
        )
        self._write_size = 0
        self._write_fd = self._open_segment(self._write_segment)
        self._read_fd: int | None = None
        self._read_segment = -1
        self.closed = False

    # --- Start-up -------------------------------------------------------------------------------------------

    @staticmethod
    def _take_folder_lock(path: Path) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise SpoolInUse(f"{path.parent} is used by another loopsite client") from None
        return fd

    def _segments(self) -> list[int]:
        names = (p.name[: -len(SUFFIX)] for p in self.log_dir.glob(f"*{SUFFIX}"))
        return sorted(int(n) for n in names if n.isdigit())

    def _read_ack(self) -> Position | None:
        try:
            text = (self.log_dir / "ack").read_text(encoding="ascii").split()
            return int(text[0]), int(text[1])
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def _cut_torn_tail(path: Path) -> None:
        """A record was being written when the machine stopped: drop that partial record."""
        data = path.read_bytes()
        position = 0
        while position + HEADER.size <= len(data):
            (size,) = HEADER.unpack_from(data, position)
            if position + HEADER.size + size > len(data):
                break
            position += HEADER.size + size
        if position != len(data):
            with path.open("rb+") as f:
                f.truncate(position)

    def _open_segment(self, number: int) -> int:
        return os.open(self.log_dir / _segment_name(number), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # --- Writer (under ``lock``) ------------------------------------------------------------------------------

    def append(self, data: bytes) -> Position:
        """Append one record (see ``record``). Call with ``lock`` held. Raises ``SpoolFull`` or ``OSError``."""
        if self.closed:
            raise OSError("the spool is closed")
        if self._pending_bytes + len(data) > self._max_bytes:
            raise SpoolFull(f"the spool holds {self._pending_bytes} bytes of unsent entries")
        written = 0
        try:
            while written < len(data):
                written += os.write(self._write_fd, data[written:] if written else data)
        except OSError:
            if written:
                os.ftruncate(self._write_fd, self._write_size)  # no torn record for the next one to follow
            raise
        self._write_size += written
        self._pending_bytes += written
        position = (self._write_segment, self._write_size)
        if self._write_size >= self._segment_bytes:
            os.close(self._write_fd)
            self._write_fd = self._open_segment(self._write_segment + 1)
            self._write_size = 0
            self._write_segment += 1  # after the new file exists: a reader seeing it knows the old one is whole
        return position

    @property
    def write_position(self) -> Position:
        """Where the next record goes. Read it with ``lock`` held: a rotation changes both numbers."""
        return (self._write_segment, self._write_size)

    @property
    def acked(self) -> Position:
        return self._acked

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    # --- Reader (the sender thread) -------------------------------------------------------------------------

    def read(self, *, max_lines: int, max_bytes: int) -> Batch | None:
        """The next entries after the ack position: at most ``max_lines``, and ``max_bytes`` unless one record alone
        is larger; None when there are none."""
        while True:
            if self.closed:
                raise ValueError("the spool is closed")
            segment, offset = self._acked
            closed = segment < self._write_segment  # read before the data: a closed segment is read whole
            fd = self._reader(segment)
            chunk = os.pread(fd, max_bytes, offset) if fd is not None else b""
            entries: list[Any] = []
            position = 0
            while len(entries) < max_lines and position + HEADER.size <= len(chunk):
                (size,) = HEADER.unpack_from(chunk, position)
                start = position + HEADER.size
                if start + size > len(chunk):
                    if not entries and fd is not None and len(chunk) >= max_bytes:
                        payload = os.pread(fd, size, offset + start)  # one record larger than max_bytes
                        if len(payload) == size:
                            entries.append(marshal.loads(payload))
                            position = start + size
                    break
                entries.append(marshal.loads(chunk[start : start + size]))
                position = start + size
            if entries:
                return Batch(entries, (segment, offset), (segment, offset + position))
            if closed:
                self._retire(segment)
                continue
            return None

    def _reader(self, segment: int) -> int | None:
        if self._read_segment != segment:
            if self._read_fd is not None:
                os.close(self._read_fd)
                self._read_fd = None
            try:
                self._read_fd = os.open(self.log_dir / _segment_name(segment), os.O_RDONLY)
            except FileNotFoundError:
                self._read_fd = None
            self._read_segment = segment
        return self._read_fd

    def _retire(self, segment: int) -> None:
        """Every record of a closed segment is answered: delete it and go on with the next one."""
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
            self._read_segment = -1
        path = self.log_dir / _segment_name(segment)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        with self.lock:
            if self.closed:
                return
            offset = self._acked[1] if self._acked[0] == segment else 0
            self._pending_bytes -= max(0, size - offset)
            self._acked = (segment + 1, 0)
            self._write_ack(self._acked)
        path.unlink(missing_ok=True)

    def ack(self, end: Position) -> None:
        """Everything up to ``end`` (in the current read segment) is answered."""
        with self.lock:
            if self.closed or end <= self._acked:
                return
            self._pending_bytes -= end[1] - self._acked[1] if end[0] == self._acked[0] else 0
            self._acked = end
            self._write_ack(end)

    def _write_ack(self, position: Position) -> None:
        os.pwrite(self._ack_fd, ACK_FORMAT.format(*position).encode("ascii"), 0)

    # --- Dead letters ---------------------------------------------------------------------------------------

    def dead_letter(self, entry: Any, *, status: str, errors: Any, http_status: int | None) -> None:
        record = {
            "deadLetteredAt": datetime.now(timezone.utc).isoformat(),
            "status": status,
            "httpStatus": http_status,
            "errors": errors,
            "entry": entry,
        }
        data = (json.dumps(record, separators=(",", ":"), default=repr) + "\n").encode("utf-8")
        fd = os.open(self.dead_letter_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the files. Call with ``lock`` held; the reader's next call then fails instead of using them."""
        self.closed = True
        if self._acked >= self.write_position:  # everything answered: leave no segment behind
            (self.log_dir / _segment_name(self._write_segment)).unlink(missing_ok=True)
        for fd in (self._write_fd, self._read_fd, self._ack_fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._read_fd = None


def dump(directory: Path) -> int:
    """Print the unsent entries of the spool in ``directory`` as JSON lines (the spool is left as it is)."""
    log_dir = directory / "log"
    ack: Position = (0, 0)
    try:
        text = (log_dir / "ack").read_text(encoding="ascii").split()
        ack = (int(text[0]), int(text[1]))
    except (OSError, ValueError, IndexError):
        pass
    count = 0
    for path in sorted(log_dir.glob(f"*{SUFFIX}")):
        number = int(path.name[: -len(SUFFIX)])
        if number < ack[0]:
            continue
        data = path.read_bytes()
        position = ack[1] if number == ack[0] else 0
        while position + HEADER.size <= len(data):
            (size,) = HEADER.unpack_from(data, position)
            if position + HEADER.size + size > len(data):
                break
            entry = marshal.loads(data[position + HEADER.size : position + HEADER.size + size])
            sys.stdout.write(json.dumps(entry, default=repr) + "\n")
            position += HEADER.size + size
            count += 1
    return count


if __name__ == "__main__":  # pragma: no cover - python -m loopsite_client.spool DIR
    dump(Path(sys.argv[1] if len(sys.argv) > 1 else "var/spool"))
