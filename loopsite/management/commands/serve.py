"""Web, worker and beat together for one machine: three child processes of one command.

Ctrl-C or SIGTERM stops all three (each gets SIGTERM, then SIGKILL after ``--stop-timeout``); if one of them dies,
the others are stopped and the command exits non-zero, so a supervisor sees the failure.
"""

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from argparse import ArgumentParser
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

POLL_SECONDS = 0.2
READY_SECONDS = 60.0


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if `serve` itself is killed outright, so no orphan keeps the port."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        # A session of its own: Ctrl-C reaches `serve` alone, which then stops the children in order.
        self.process = subprocess.Popen(
            self.argv, cwd=settings.BASE_DIR, start_new_session=True, preexec_fn=_die_with_parent
        )

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def kill_group(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _gunicorn_extra_args() -> list[str]:
    """Newer gunicorn opens a control socket in the home folder; two servers on one machine would share it."""
    from gunicorn.config import KNOWN_SETTINGS

    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


def _split_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise CommandError(f"--bind {bind!r}: expected HOST:PORT, e.g. 127.0.0.1:8000")
    return host.strip("[]") or "127.0.0.1", int(port)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Command(BaseCommand):
    help = "Run the web server (gunicorn), the Celery worker and Celery beat together. Ctrl-C stops all three."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT for the web server")
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
        parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
        parser.add_argument("--stop-timeout", type=float, default=10.0, help="seconds to wait before SIGKILL")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = _split_bind(options["bind"])
        call_command("collectstatic", interactive=False, verbosity=0)
        python = sys.executable
        children = [
            Child(
                "web",
                [
                    python, "-m", "gunicorn", "loopsite.wsgi:application",
                    "--bind", options["bind"],
                    "--workers", str(options["web_workers"]),
                    "--graceful-timeout", str(int(options["stop_timeout"])),
                    "--access-logfile", "-",
                    *_gunicorn_extra_args(),
                ],
            ),
            Child(
                "worker",
                [
                    python, "-m", "celery", "-A", "loopsite", "worker",
                    "--loglevel", "INFO",
                    "--concurrency", str(options["concurrency"]),
                ],
            ),
            Child(
                "beat",
                [
                    python, "-m", "celery", "-A", "loopsite", "beat",
                    "--loglevel", "INFO",
                    "-S", "django_celery_beat.schedulers:DatabaseScheduler",
                ],
            ),
        ]  # fmt: skip

        stop_signal: list[int] = []

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop_signal.append(signum)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in children:
                child.start()
            failed = self._watch(children, stop_signal, host, port)
        finally:
            self._stop(children, options["stop_timeout"], stop_signal)
            for s, handler in previous.items():
                signal.signal(s, handler)
        if failed is not None:
            raise CommandError(f"{failed.name} exited with code {failed.exit_code()}; stopped the others")
        self.stdout.write("loopsite stopped")

    def _watch(self, children: list[Child], stop_signal: list[int], host: str, port: int) -> Child | None:
        """Wait for a stop signal (None) or a child's death (that child)."""
        shown = False
        started = time.monotonic()
        while not stop_signal:
            for child in children:
                if child.exit_code() is not None:
                    return child
            if not shown and _listening("127.0.0.1" if host in {"0.0.0.0", "::"} else host, port):
                shown = True
                url_host = "127.0.0.1" if host in {"0.0.0.0", "::"} else host
                url_host = f"[{url_host}]" if ":" in url_host else url_host
                self.stdout.write(
                    self.style.SUCCESS(f"loopsite is running: open http://{url_host}:{port}/")
                    + "  (admin /admin/, API docs /api/docs/). Ctrl-C stops web, worker and beat."
                )
                self.stdout.flush()
            elif not shown and time.monotonic() - started > READY_SECONDS:
                shown = True
                self.stderr.write(f"the web server is not answering on {host}:{port} yet; still waiting")
            time.sleep(POLL_SECONDS)
        return None

    def _stop(self, children: list[Child], timeout: float, stop_signal: list[int]) -> None:
        """SIGTERM to each, then SIGKILL to what is left after ``timeout``, or at once on a second Ctrl-C."""
        signals_before = len(stop_signal)
        for child in children:
            child.signal(signal.SIGTERM)
        if any(child.exit_code() is None for child in children):
            self.stdout.write("stopping web, worker and beat (Ctrl-C again to kill them now)")
        deadline = time.monotonic() + timeout
        while any(child.exit_code() is None for child in children):
            if len(stop_signal) > signals_before:
                self.stderr.write("killing web, worker and beat")
                break
            if time.monotonic() > deadline:
                late = ", ".join(c.name for c in children if c.exit_code() is None)
                self.stderr.write(f"{late} did not stop within {timeout:g}s; killing it")
                break
            time.sleep(POLL_SECONDS)
        for child in children:
            # Also reaps anything a child left in its session (gunicorn or Celery pool processes).
            child.kill_group()
