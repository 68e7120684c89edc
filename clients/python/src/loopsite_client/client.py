"""``Client``: the live config (polled in the background, kept on disk) and decision logging that never waits.

Threads: the caller's (``log``, ``config``, ``decide`` touch no network), a writer thread (moves queued entries to
the spool on disk), a sender thread (reads the spool, posts batches, retries) and a config poller thread. See
``spool.py`` for what is on disk.

An agent that keeps its own clock (a batch job, a simulation) can do without the threads: ``poll_interval=None``
reads the config only at start and on ``refresh()``; ``background=False`` writes each entry to the spool in
``log()`` and sends in ``flush()``, both on the caller's thread. ``transport`` replaces HTTP (see ``Transport``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import numbers
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from loopsite_client import __version__
from loopsite_client._http import Backoff, Http, Response, Transport, TransportError
from loopsite_client._ids import IdMaker, UtcClock
from loopsite_client.config import Config, ConfigFile, ConfigUnavailable
from loopsite_client.spool import Batch, Spool, SpoolFull, record

logger = logging.getLogger("loopsite_client")

CONFIG_PATH = "/api/v1/config"
BATCH_PATH = "/api/v1/decisions/batch"
SERVER_BATCH_LIMIT = 1000
# Whole-batch answers that mean "something in this body is refused": split the batch to find the entry.
REFUSED_BODY = (400, 413, 422)
RECENT_CONFIGS = 8


class ClientClosed(RuntimeError):
    """``log()`` after ``close()``."""


class _Retry:
    def __init__(self, retry_after: float | None = None) -> None:
        self.retry_after = retry_after


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}: {response.body[:200]!r}")
        self.response = response


def _jsonable(value: Any) -> Any:
    """What ``json`` cannot write on its own: times as ISO 8601, numpy scalars and arrays, sets; else ``str``
    (the server then names the field it refuses, and the entry is dead-lettered with its message)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


class Client:
    """An agent's connection to loopsite.

    ``Client(base_url, key, spool_dir)`` reads the live config once (at most ``start_timeout`` seconds), falling
    back to the copy kept in ``spool_dir`` when the server cannot be reached, and starts the background threads.
    One client per spool folder: a second one (in any process) gets ``SpoolInUse``.

    ``poll_interval=None``: no config poller; the config changes only on ``refresh()``. ``background=False``: no
    writer or sender thread; ``log()`` writes through to the spool and nothing is sent until ``flush()`` or
    ``close()``, which send on the calling thread. ``transport``: what carries the requests (default: HTTP to
    ``base_url``, which is then only a label).
    """

    def __init__(
        self,
        base_url: str,
        key: str,
        spool_dir: str | Path = "var/spool",
        *,
        batch_size: int = 500,
        linger: float = 0.2,
        poll_interval: float | None = 30.0,
        timeout: float = 10.0,
        start_timeout: float = 2.0,
        max_backoff: float = 5.0,
        max_spool_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        max_batch_bytes: int = 4 << 20,
        queue_size: int = 10_000,
        write_interval: float = 0.005,
        write_through: bool = False,
        background: bool = True,
        transport: Transport | None = None,
    ) -> None:
        if not 1 <= batch_size <= SERVER_BATCH_LIMIT:
            raise ValueError(f"batch_size must be 1..{SERVER_BATCH_LIMIT}")
        if poll_interval is not None and not poll_interval > 0:
            raise ValueError("poll_interval must be positive, or None for no background polling")
        self.base_url = base_url
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._batch_size = batch_size
        self._linger = linger
        self._poll_interval = poll_interval
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._max_batch_bytes = max_batch_bytes
        self._queue_size = queue_size
        self._write_interval = write_interval
        self._background = background
        self._write_through = write_through or not background  # without a writer thread, log() writes
        self._queue: deque[tuple[int, dict[str, Any]]] = deque()
        self._has_work = threading.Event()
        self._id_lock = threading.Lock()
        self._max_queued = 0  # the most entries ever only in memory: what a killed process could have lost

        self._spool = Spool(self.spool_dir, segment_bytes=segment_bytes, max_bytes=max_spool_bytes)
        self._lock = self._spool.lock
        self._ids = IdMaker()
        self._clock = UtcClock()
        self._encoder = json.JSONEncoder(separators=(",", ":"), default=_jsonable)
        self._config_file = ConfigFile(self.spool_dir, key_fingerprint=hashlib.sha256(key.encode()).hexdigest()[:16])
        self._config: Config | None = None
        self._recent: list[Config] = []

        self._acked = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._urgent = 0  # flush() calls waiting: send what there is without lingering
        self._since_wake = 0
        self._counts = {"logged": 0, "sent": 0, "dead_lettered": 0, "dropped": 0, "retries": 0}
        self._dropped_seen = 0
        self.last_error: str | None = None
        self._last_by_kind: dict[str, str] = {}

        self._headers = {
            "Authorization": f"Bearer {key}",
            "Accept": "application/json",
            "User-Agent": f"loopsite-client/{__version__}",
        }
        self._post_headers = {**self._headers, "Content-Type": "application/json"}
        self._fetch_lock = threading.Lock()  # refresh() and the poller share one connection
        self._flush_lock = threading.Lock()  # background=False: one flush() sends at a time
        self._poll_http: Transport
        self._send_http: Transport
        if transport is None:
            # One connection per thread: ``http.client`` is not thread-safe.
            self._poll_http = Http(base_url, key, timeout=timeout)
            self._send_http = Http(base_url, key, timeout=timeout)
        else:
            self._poll_http = self._send_http = transport
        try:
            self._fetch_config(timeout=start_timeout)
        except (*TransportError, _Refused, ValueError) as exc:
            self._note_error(f"config read at start failed: {exc}")
            disk = self._config_file.load()
            if disk is not None:
                self._set_config(disk, save=False)
                logger.warning("loopsite_client.config_from_disk", extra={"version": disk.version})

        self._threads: list[threading.Thread] = []
        if background:
            self._threads.append(threading.Thread(target=self._write_loop, name="loopsite-client-writer", daemon=True))
            self._threads.append(threading.Thread(target=self._send_loop, name="loopsite-client-sender", daemon=True))
        if poll_interval is not None:
            self._threads.append(threading.Thread(target=self._poll_loop, name="loopsite-client-config", daemon=True))
        for thread in self._threads:
            thread.start()

    # --- The agent's side: no network here -------------------------------------------------------------------

    def config(self) -> Config:
        """The live config as last read (from the server, or from disk when it could not be reached at start).
        Never waits; raises ``ConfigUnavailable`` only while no config was ever read."""
        config = self._config
        if config is None:
            raise ConfigUnavailable("no config yet: the server has not answered and the spool folder holds none")
        return config

    def refresh(self, timeout: float | None = None) -> bool:
        """Read the live config now, on the calling thread, with ``If-None-Match`` (a 304 keeps the config held).
        True when the server answered; False when it could not be read (the config held is kept, the reason is in
        ``last_error``). With ``poll_interval=None`` this is the only way a new version reaches the client."""
        try:
            self._fetch_config(timeout=self._timeout if timeout is None else timeout)
        except (*TransportError, _Refused, ValueError, KeyError, TypeError) as exc:
            self._note_error(f"config read failed: {exc}")
            return False
        return True

    def decide(self, confidence: float, session_id: str | None = None) -> tuple[str, str, float]:
        """(action, threshold name, threshold value) by the contract's rule on the thresholds the session decides
        with: while a canary serves, the canary's values for a session in its arm (``Config.in_canary``), else the
        live thresholds. Without ``session_id``, always the live thresholds: pass the id the entry will be logged
        under, or the session is counted in the control arm while deciding on the live values."""
        return self.config().arm_config(session_id).decide(confidence)

    def log(self, entry: Mapping[str, Any]) -> str:
        """Log one decision (an ``ActionLogEntry`` dict) and return its id at once.

        Fills ``id`` (time-ordered, UUIDv7), ``timestamp`` (now, UTC), ``agentId`` and ``configVersion`` (the
        version whose value of the entry's threshold is its ``thresholdUsed``: the canary's for a session in its
        arm) when absent. While a proposal runs in shadow, an entry with a numeric ``decision.confidence`` and no
        ``decision.shadowAction`` also gets ``decision.shadowAction`` (what the candidate values would have done)
        and ``decision.shadowProposalId``; the caller's ``decision`` dict is not changed. The entry goes to a
        bounded in-memory queue that a writer thread moves to the spool on disk every few milliseconds (or, with
        ``write_through=True``, to the spool before this returns); the sender thread delivers it from there.
        """
        if self._closed:
            raise ClientClosed("log() after close()")
        data = dict(entry)
        config = self._config
        if config is not None:
            if data.get("agentId") is None and config.agent_id:
                data["agentId"] = config.agent_id
            if config.canary is not None or config.shadow is not None:
                self._fill_rollout(data, config)
            elif data.get("configVersion") is None:
                version = self._version_for(data, config)
                if version is not None:
                    data["configVersion"] = version
        if self._write_through:
            if data.get("timestamp") is None:
                data["timestamp"] = self._clock.now()
            with self._lock:
                if self._spool.closed:
                    raise ClientClosed("log() after close()")
                entry_id = data.get("id")
                if entry_id is None:
                    entry_id = data["id"] = self._ids()
                self._spool_one(data)
            return str(entry_id)
        entry_id = data.get("id")
        if entry_id is None:
            with self._id_lock:
                entry_id = data["id"] = self._ids()
        queue = self._queue
        waiting = len(queue)
        if waiting >= self._queue_size // 2 and self._lock.acquire(blocking=waiting >= self._queue_size):
            # The writer is behind: this caller writes the oldest queued entry to the spool itself (order kept,
            # one write's cost). Past half the bound only when the writer is not writing right now; at the bound
            # always, so that no more than ``queue_size`` entries are ever only in memory.
            try:
                if queue:
                    ns, oldest = queue.popleft()
                    if oldest.get("timestamp") is None:
                        oldest["timestamp"] = self._clock.at(ns)
                    self._spool_one(oldest)
            finally:
                self._lock.release()
        queue.append((time.time_ns(), data))
        if len(queue) > self._max_queued:
            self._max_queued = len(queue)
        if not self._has_work.is_set():
            self._has_work.set()
        if self._closed:  # close() ran meanwhile: write it now, or say it was not logged
            with self._lock:
                if self._spool.closed:
                    raise ClientClosed("log() after close()")
                self._write_queued()
        return str(entry_id)

    def _write_queued(self, limit: int | None = None) -> None:
        """Move the queued entries (at most ``limit``) to the spool, in order. Call with ``_lock`` held."""
        queue = self._queue
        at = self._clock.at
        while queue and (limit is None or limit > 0):
            if limit is not None:
                limit -= 1
            ns, data = queue.popleft()
            if data.get("timestamp") is None:
                data["timestamp"] = at(ns)
            self._spool_one(data)

    def _spool_one(self, data: dict[str, Any]) -> None:
        """Append one entry to the spool. Call with ``_lock`` held."""
        try:
            line = record(data)
        except ValueError:
            # A value marshal cannot write (a datetime, a numpy number...): as JSON would write it.
            try:
                data = json.loads(self._encoder.encode(data))
                line = record(data)
            except (TypeError, ValueError) as exc:
                self._dead_letter(repr(data), status="unserializable", errors=str(exc), http_status=None)
                return
        try:
            self._spool.append(line)
        except (SpoolFull, OSError) as exc:
            self._drop(str(data.get("id")), exc)
            return
        self._counts["logged"] += 1
        self._since_wake += 1
        if self._since_wake >= self._batch_size:
            self._since_wake = 0
            self._wake.set()

    def _write_loop(self) -> None:
        """The writer thread: wakes when the queue gets an entry, lets ``write_interval`` pass so that it writes
        many at once, then moves them to the spool."""
        while True:
            self._has_work.wait()
            stopping = self._stop.wait(self._write_interval)
            self._has_work.clear()
            try:
                while self._queue:
                    with self._lock:  # in short stretches: a caller spilling at the bound never waits long
                        if self._spool.closed:
                            return
                        self._write_queued(limit=64)
            except Exception as exc:  # noqa: BLE001 - the writer must outlive anything
                self._note_error(f"spool write: {type(exc).__name__}: {exc}")
            if stopping:
                return

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything logged so far is answered by the server (stored, or refused and dead-lettered).
        True when it is, False at ``timeout`` or when an entry could not even be spooled since the last flush.
        With ``background=False`` the batches are sent here, on the calling thread."""
        deadline = time.monotonic() + timeout
        if not self._background:
            return self._flush_here(deadline)
        with self._lock:
            self._write_queued()
            target = self._spool.write_position
            dropped = self._counts["dropped"]
            self._urgent += 1
        self._wake.set()
        try:
            with self._acked:
                while self._spool.acked < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._acked.wait(min(remaining, 0.5))
                done = self._spool.acked >= target
        finally:
            with self._lock:
                self._urgent -= 1
        clean = dropped == self._dropped_seen
        self._dropped_seen = dropped
        return done and clean

    def _flush_here(self, deadline: float) -> bool:
        """``flush`` without a sender thread: post the spool's unanswered entries in batches, retrying with backoff
        until ``deadline``."""
        with self._flush_lock:
            with self._lock:
                target = self._spool.write_position
                dropped = self._counts["dropped"]
            backoff = Backoff(base=0.1, cap=self._max_backoff, rng=random.Random())
            while self._spool.acked < target:
                batch = self._spool.read(max_lines=self._batch_size, max_bytes=self._max_batch_bytes)
                if batch is None:
                    break
                try:
                    retry = self._deliver_batch(batch)
                except OSError as exc:  # the dead-letter file could not be written: try the batch again
                    self._note_error(f"dead-letter write failed: {exc}")
                    retry = _Retry()
                if retry is None:
                    self._spool.ack(batch.end)
                    backoff.reset()
                    continue
                self._counts["retries"] += 1
                delay = backoff.next(retry.retry_after)
                if time.monotonic() + delay > deadline:
                    break
                time.sleep(delay)
            done = self._spool.acked >= target
        clean = dropped == self._dropped_seen
        self._dropped_seen = dropped
        return done and clean

    def close(self, timeout: float = 5.0) -> bool:
        """Send what can be sent within ``timeout``, then stop the threads. What is left stays in the spool and
        goes out from the next client started on the same folder. Returns what the final ``flush`` returned."""
        if self._closed:
            return True
        self._closed = True
        flushed = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._has_work.set()
        for thread in self._threads:
            thread.join(timeout=self._timeout + 1)
        with self._lock:
            self._write_queued()
            self._spool.close()
        for transport in {id(t): t for t in (self._poll_http, self._send_http)}.values():
            close = getattr(transport, "close", None)
            if callable(close):
                close()
        return flushed

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self._counts,
                "pending_bytes": self._spool.pending_bytes,
                "queued": len(self._queue),
                "max_queued": self._max_queued,
                "config_version": self._config.version if self._config else None,
                "last_error": self.last_error,
            }

    @property
    def dead_letter_path(self) -> Path:
        return self._spool.dead_letter_path

    # --- Config ---------------------------------------------------------------------------------------------

    def _fill_rollout(self, data: dict[str, Any], config: Config) -> None:
        """``configVersion`` and the shadow fields of an entry logged while a canary or a shadow is in force.

        The session's arm is drawn once (one SHA-256, only with a canary, and only when a field is to be filled): a
        canary-arm entry whose threshold has the canary's value names the canary's version, and the shadow is laid
        over the arm's values, so that the candidate is compared with what the session really decided on."""
        decision = data.get("decision")
        if not isinstance(decision, Mapping):
            decision = None
        confidence = _shadow_confidence(decision) if config.shadow is not None else None
        fill_version = data.get("configVersion") is None
        if not fill_version and confidence is None:
            return
        session = data.get("sessionId")
        arm = config.arm_config(session) if config.canary is not None and isinstance(session, str) else config
        if fill_version:
            version = _arm_version(decision, arm) if arm is not config else None
            if version is None:
                version = self._version_for(data, config)
            if version is not None:
                data["configVersion"] = version
        if confidence is not None and decision is not None and config.shadow is not None:
            action = arm.shadow_action(confidence)  # the arm is chosen: its own values, overridden by the shadow
            if action is not None:
                proposal_id = decision.get("shadowProposalId")
                data["decision"] = {  # a new dict: the caller's entry is left as it was
                    **decision,
                    "shadowAction": action,
                    "shadowProposalId": config.shadow.proposal_id if proposal_id is None else proposal_id,
                }

    def _version_for(self, data: dict[str, Any], config: Config) -> int | None:
        """The newest known version under which the entry's threshold had the value it says it used."""
        decision = data.get("decision")
        if not isinstance(decision, Mapping):
            return None
        used = decision.get("thresholdUsed")
        name = decision.get("thresholdName") or config.gate_of(decision.get("action"))
        if name is None or used is None:
            return None
        if config.thresholds.get(name) == used:
            return config.version
        for older in reversed(self._recent):
            if older.thresholds.get(name) == used:
                return older.version
        return None

    def _set_config(self, config: Config, *, save: bool) -> None:
        current = self._config
        self._config = config
        if current is None or current.version != config.version:
            self._recent = [c for c in self._recent if c.version != config.version][-(RECENT_CONFIGS - 1) :]
            self._recent.append(config)
            logger.info("loopsite_client.config_changed", extra={"version": config.version})
        if save:
            try:
                self._config_file.save(config)
            except OSError as exc:
                self._note_error(f"could not keep the config on disk: {exc}")

    def _fetch_config(self, *, timeout: float) -> None:
        with self._fetch_lock:
            self._fetch_config_locked(timeout=timeout)

    def _fetch_config_locked(self, *, timeout: float) -> None:
        current = self._config
        headers = dict(self._headers)
        if current is not None and current.etag:
            headers["If-None-Match"] = current.etag
        response = self._poll_http.request("GET", CONFIG_PATH, headers=headers, timeout=timeout)
        if response.status == 304 and current is not None:
            if current.from_disk:
                self._set_config(dataclasses.replace(current, from_disk=False), save=False)
            return
        if response.status != 200:
            raise _Refused(response)
        config = Config.from_json(json.loads(response.body), etag=response.headers.get("etag"))
        self._set_config(config, save=True)

    def _poll_loop(self) -> None:
        interval = self._poll_interval
        assert interval is not None  # the poller runs only with an interval
        backoff = Backoff(base=0.5, cap=max(0.5, interval), rng=random.Random())
        delay = interval if self._config is not None and not self._config.from_disk else 0.5
        while not self._stop.wait(delay):
            try:
                self._fetch_config(timeout=self._timeout)
            except _Refused as exc:
                self._note_error(f"config read refused: {exc}")
                delay = backoff.next(exc.response.retry_after)
            except (*TransportError, ValueError) as exc:
                self._note_error(f"config read failed: {exc}")
                delay = backoff.next()
            except Exception as exc:  # noqa: BLE001 - the poller must outlive anything
                self._note_error(f"config poller: {type(exc).__name__}: {exc}")
                delay = backoff.next()
            else:
                backoff.reset()
                delay = interval * random.uniform(0.9, 1.1)

    # --- Sending --------------------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        backoff = Backoff(base=0.1, cap=self._max_backoff, rng=random.Random())
        lingering_since: float | None = None
        while not self._stop.is_set():
            try:
                before = self._spool.acked
                batch = self._spool.read(max_lines=self._batch_size, max_bytes=self._max_batch_bytes)
                if self._spool.acked != before:
                    self._notify_acked()
            except (OSError, ValueError) as exc:  # ValueError: the spool was closed under us
                self._note_error(f"spool read failed: {exc}")
                self._stop.wait(1.0)
                continue
            if batch is None:
                lingering_since = None
                self._wake.wait(self._linger)
                self._wake.clear()
                continue
            at_tail = batch.end >= self._spool.write_position  # else more is waiting: no reason to linger
            if at_tail and len(batch.entries) < self._batch_size and not self._urgent and not self._closed:
                now = time.monotonic()
                lingering_since = lingering_since or now
                if now - lingering_since < self._linger:
                    self._wake.wait(self._linger - (now - lingering_since))
                    self._wake.clear()
                    continue
            lingering_since = None
            try:
                retry = self._deliver_batch(batch)
            except OSError as exc:  # the dead-letter file could not be written: try the batch again later
                self._note_error(f"dead-letter write failed: {exc}")
                retry = _Retry()
            except Exception as exc:  # noqa: BLE001 - a custom transport's bug must not stop the sender
                self._note_error(f"send: {type(exc).__name__}: {exc}")
                retry = _Retry()
            if retry is None:
                self._spool.ack(batch.end)
                self._notify_acked()
                backoff.reset()
                continue
            self._counts["retries"] += 1
            self._stop.wait(backoff.next(retry.retry_after))

    def _notify_acked(self) -> None:
        with self._acked:
            self._acked.notify_all()

    def _deliver_batch(self, batch: Batch) -> _Retry | None:
        entries = batch.entries
        if any(not isinstance(e, dict) or e.get("agentId") is None for e in entries):
            # Logged before the agent's id was known: it is added now, or the batch waits until it is.
            config = self._config
            if config is None or not config.agent_id:
                return _Retry()
            for entry in entries:
                if isinstance(entry, dict) and entry.get("agentId") is None:
                    entry["agentId"] = config.agent_id
        return self._deliver(entries)

    def _encoded(self, entries: list[Any]) -> tuple[list[Any], bytes]:
        """The batch body. An entry JSON cannot write (a key that is not a string...) is dead-lettered here."""
        try:
            return entries, self._encoder.encode({"entries": entries}).encode("ascii")
        except (TypeError, ValueError):
            kept = []
            for entry in entries:
                try:
                    self._encoder.encode(entry)
                except (TypeError, ValueError) as exc:
                    self._dead_letter(repr(entry), status="unserializable", errors=str(exc), http_status=None)
                else:
                    kept.append(entry)
            return kept, self._encoder.encode({"entries": kept}).encode("ascii")

    def _deliver(self, entries: list[Any]) -> _Retry | None:
        """Post ``entries``; None when the server answered every one of them, else when to try again."""
        lines, body = self._encoded(entries)
        if not lines:
            return None
        try:
            response = self._send_http.request("POST", BATCH_PATH, body=body, headers=self._post_headers)
        except TransportError as exc:
            self._note_error(f"send failed: {type(exc).__name__}: {exc}")
            return _Retry()
        if response.status == 200:
            return self._settle(lines, response)
        if response.status in REFUSED_BODY:
            if len(lines) > 1:
                # One entry (or the batch's size) is refused as a whole body: halve until it is found.
                middle = len(lines) // 2
                return self._deliver(lines[:middle]) or self._deliver(lines[middle:])
            self._dead_letter(lines[0], status="refused", errors=_error_of(response), http_status=response.status)
            return None
        self._note_error(f"send answered HTTP {response.status}: {response.body[:200]!r}")
        return _Retry(response.retry_after)

    def _settle(self, lines: list[Any], response: Response) -> _Retry | None:
        body = response.body
        if b'"invalid"' not in body and b'"conflict"' not in body and body.count(b'"status"') == len(lines):
            self._counts["sent"] += len(lines)  # every entry created or duplicate: no need to parse the answer
            return None
        try:
            results = json.loads(body)["results"]
        except (ValueError, KeyError, TypeError):
            results = None
        if not isinstance(results, list) or len(results) != len(lines):
            self._note_error(f"the server's batch answer does not have one result per entry: {body[:200]!r}")
            return _Retry()
        statuses = [r.get("status") if isinstance(r, dict) else None for r in results]
        if any(s not in ("created", "duplicate", "invalid", "conflict") for s in statuses):
            self._note_error(f"unknown status in the server's batch answer: {body[:200]!r}")
            return _Retry()
        for line, result, status in zip(lines, results, statuses, strict=True):
            if status in ("created", "duplicate"):
                self._counts["sent"] += 1
            else:
                self._dead_letter(line, status=str(status), errors=result.get("errors"), http_status=200)
        return None

    def _dead_letter(self, entry: Any, *, status: str, errors: Any, http_status: int | None) -> None:
        self._spool.dead_letter(entry, status=status, errors=errors, http_status=http_status)
        self._counts["dead_lettered"] += 1
        logger.warning(
            "loopsite_client.dead_lettered",
            extra={"status": status, "errors": errors, "file": str(self._spool.dead_letter_path)},
        )

    def _drop(self, entry_id: str, exc: Exception) -> None:
        self._counts["dropped"] += 1
        dropped = self._counts["dropped"]
        self.last_error = f"entry {entry_id} not spooled: {exc}"
        if dropped == 1 or dropped % 1000 == 0:
            logger.error("loopsite_client.dropped", extra={"entry_id": entry_id, "dropped": dropped, "error": str(exc)})

    def _note_error(self, message: str) -> None:
        """Remember the last failure; log it once per kind (the text before the first colon) until it changes."""
        kind = message.split(":", 1)[0]
        if self._last_by_kind.get(kind) != message:
            self._last_by_kind[kind] = message
            logger.warning("loopsite_client.error", extra={"error": message})
        self.last_error = message


def _error_of(response: Response) -> Any:
    try:
        return json.loads(response.body)
    except ValueError:
        return response.body[:2000].decode("utf-8", "replace")


def _shadow_confidence(decision: Mapping[str, Any] | None) -> float | None:
    """The confidence to compute a shadow action for: a number, on an entry whose caller did not give its own
    ``shadowAction`` (never overwritten). None when there is nothing to compute."""
    if decision is None or decision.get("shadowAction") is not None:
        return None
    confidence = decision.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real):
        return None
    return float(confidence)


def _arm_version(decision: Mapping[str, Any] | None, arm: Config) -> int | None:
    """The canary arm's version when the entry's threshold has the canary's value: decided in that arm. Else None
    (decided on another value, such as the live one without a session id: the live versions are searched)."""
    if decision is None:
        return None
    name = decision.get("thresholdName") or arm.gate_of(decision.get("action"))
    used = decision.get("thresholdUsed")
    if isinstance(name, str) and used is not None and arm.thresholds.get(name) == used:
        return arm.version
    return None
