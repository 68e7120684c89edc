"""Entry ids and timestamps made on the client, cheaply: ``log()`` must not cost more than a few microseconds."""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timezone

_random = random.Random(os.urandom(32))
# A forked child must not draw the same "random" bits as its parent (and so make the same ids).
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


class IdMaker:
    """UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, a 12-bit counter, 62 random bits.

    The counter (method 1 of the RFC) keeps the ids of one maker strictly increasing even within one millisecond
    or when the clock steps back. The random bits come from a generator seeded from ``os.urandom`` (reseeded in a
    forked child): ids must be unique, not unguessable. Not thread-safe: the client calls it under its lock.
    """

    def __init__(self) -> None:
        self._last_ms = 0
        self._counter = 0

    def __call__(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms > self._last_ms:
            self._last_ms = ms
            self._counter = _random.getrandbits(8)  # a random start leaves room to count up within the millisecond
        else:
            self._counter += 1
            if self._counter > 0xFFF:
                self._last_ms += 1
                self._counter = 0
        value = (self._last_ms << 80) | (0x7 << 76) | (self._counter << 64) | (0b10 << 62) | _random.getrandbits(62)
        text = f"{value:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class UtcClock:
    """A time (nanoseconds since the epoch) as ISO 8601 in UTC with microseconds
    (``2026-03-02T08:00:00.123456+00:00``), formatting the date and time only when the second changes. Not
    thread-safe: the client calls it under its lock."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        return self.at(time.time_ns())

    def at(self, ns: int) -> str:
        second, nanos = divmod(ns, 1_000_000_000)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._prefix}.{nanos // 1000:06d}+00:00"
