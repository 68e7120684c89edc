"""`manage.py serve` as a user runs it: a real process with web, worker and beat, on a throwaway SQLite db."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

DEADLINE_SECONDS = 90


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated embedded database in a folder of its own, shared by this module's tests."""
    path = tmp_path_factory.mktemp("serve-var")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        cwd=settings.BASE_DIR,
        env=_env(path),
        check=True,
        timeout=300,
    )
    return path


def _env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env["LOOPSITE_VAR_DIR"] = str(var_dir)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; the fields after the last ")" are fixed.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


def _wait_gone(pids: list[int], seconds: float = 20) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


class Serve:
    def __init__(self, var_dir: Path) -> None:
        self.port = _free_port()
        self.log = var_dir / f"serve-{self.port}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "serve",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--web-workers",
                    "1",
                    "--concurrency",
                    "1",
                ],
                cwd=settings.BASE_DIR,
                env=_env(var_dir),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve exited early:\n{self.output()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/admin/login/", timeout=5) as response:
                    if response.status == 200 and len(_children(self.process.pid)) == 3:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # a slow answer on a busy machine
                pass
            time.sleep(0.5)
        pytest.fail(f"serve did not answer within {DEADLINE_SECONDS}s:\n{self.output()}")


@pytest.fixture
def serve(var_dir: Path) -> Iterator[Serve]:
    server = Serve(var_dir)
    yield server
    if server.process.poll() is None:  # a failed test must not leave a server behind
        leftovers = _descendants(server.process.pid)
        server.process.kill()
        server.process.wait()
        for pid in leftovers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_serve__sigint__web_worker_and_beat_all_exit_cleanly(serve: Serve) -> None:
    serve.wait_ready()
    processes = _descendants(serve.process.pid)
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in processes]

    serve.process.send_signal(signal.SIGINT)

    assert serve.process.wait(timeout=60) == 0, serve.output()
    assert _wait_gone(processes) == []
    # "gunicorn loopsite.wsgi ...", or "gunicorn: master [loopsite.wsgi]" where setproctitle renames processes
    shown = [" ".join(c.split()) for c in commands]
    assert any("gunicorn" in c and "loopsite.wsgi" in c for c in shown), shown
    assert any("celery" in c and "worker" in c for c in shown), shown
    assert any("celery" in c and "beat" in c for c in shown), shown
    output = serve.output()
    assert f"loopsite is running: open http://127.0.0.1:{serve.port}/" in output
    assert "loopsite stopped" in output


def test_serve__one_child_dies__the_others_stop_and_exit_non_zero(serve: Serve) -> None:
    serve.wait_ready()
    processes = _descendants(serve.process.pid)
    beat = next(
        pid
        for pid in _children(serve.process.pid)
        if b" beat " in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    )

    os.kill(beat, signal.SIGKILL)

    assert serve.process.wait(timeout=60) == 1, serve.output()
    assert _wait_gone(processes) == []
    assert "beat exited with code -9; stopped the others" in serve.output()
