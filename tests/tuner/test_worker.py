"""The configured tier: the cycle task run by a real Celery worker against Redis and PostgreSQL."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from tests.factories import make_agent
from tests.live_servers import RedisServer
from tests.tuner.helpers import log_rows, output, spread
from tests.tuner.test_cycle import flag_too_low_rows
from tuner.models import Proposal, TunerRun
from tuner.tasks import tuner_cycle_task

pytestmark = [pytest.mark.configured, pytest.mark.django_db(transaction=True)]


def _database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or ""
    auth = f"{user}:{db['PASSWORD']}@" if db.get("PASSWORD") else f"{user}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def test_tuner_task__sent_twice_for_one_cycle_to_a_real_worker__one_run(tmp_path: Path) -> None:
    import redis

    now = timezone.now()
    agent, _ = make_agent("worker-agent")
    rows = flag_too_low_rows(200)
    for row, at in zip(rows, spread(len(rows), now=now), strict=True):
        row["at"] = at
    log_rows(agent, rows, now=now)
    redis.Redis.from_url(settings.REDIS_URL).delete("celery")

    env: dict[str, Any] = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "ANTHROPIC_API_KEY": "",
        "DJANGO_SETTINGS_MODULE": "loopsite.settings",
    }
    log = tmp_path / "worker.log"
    celery = Path(sys.executable).with_name("celery")
    worker = subprocess.Popen(
        [
            str(celery),
            "-A",
            "loopsite",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        tuner_cycle_task.delay(agent.pk)
        tuner_cycle_task.delay(agent.pk)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if log.read_text().count("succeeded in") >= 2:
                break
            if worker.poll() is not None:
                break
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    worker_log = log.read_text()
    assert worker_log.count("succeeded in") == 2, worker_log[-3000:]
    run = TunerRun.objects.get(agent=agent)
    assert run.status == "done" and len(output(run)["proposals"]) == 1
    assert Proposal.objects.filter(agent=agent).count() == 1


def _worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    celery = Path(sys.executable).with_name("celery")
    command = [str(celery), "-A", "loopsite", "worker", "--pool=solo", "--loglevel=INFO", f"--hostname={name}@%h"]
    command += ["--without-heartbeat", "--without-mingle", "--without-gossip"]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait(what: str, done: Any, *, seconds: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs if log.exists())
    raise AssertionError(f"{what} did not happen within {seconds} s\n{tails}")


def test_tuner_task__worker_killed_mid_cycle__a_second_worker_takes_the_run_over_and_completes_it(
    tmp_path: Path,
) -> None:
    """The first worker's generator blocks on a model that never answers; the worker is killed (SIGKILL) while its
    heartbeat thread beats. With a heartbeat of 1 s and a time limit (so a visibility timeout) of 8 s, a second
    worker gets the unacknowledged message again and takes the stale run over."""
    from loopsite.celery import app

    now = timezone.now()
    agent, _ = make_agent("killed-worker-agent")
    rows = flag_too_low_rows(200)
    for row, at in zip(rows, spread(len(rows), now=now), strict=True):
        row["at"] = at
    log_rows(agent, rows, now=now)

    broker = RedisServer(tmp_path / "redis").start()  # a broker of this test's own: its unacked messages are ours
    model = socket.socket()  # a model that takes the request and never answers
    model.bind(("127.0.0.1", 0))
    model.listen(16)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "loopsite.settings",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": broker.url,
        "CACHE_KEY_PREFIX": f"killed-worker-{os.getpid()}",
        "TUNER_HEARTBEAT_SECONDS": "1",
        "TUNER_TIME_LIMIT": "8",
    }
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    logs = [first_log, second_log]
    first = _worker(
        "first",
        {
            **env,
            "ANTHROPIC_API_KEY": "sk-test",
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{model.getsockname()[1]}",
            "TUNER_LLM_TIMEOUT": "600",
        },
        first_log,
    )
    second: subprocess.Popen[bytes] | None = None
    try:
        _wait("the first worker's start", lambda: "ready." in first_log.read_text(), seconds=60, logs=logs)
        with app.connection_for_write(broker.url) as connection:
            tuner_cycle_task.apply_async(args=[agent.pk], connection=connection)

        def beating() -> bool:
            run = TunerRun.objects.filter(agent=agent).first()
            if run is None or run.status != "running" or run.heartbeat_at is None or run.started_at is None:
                return False
            return run.heartbeat_at > run.started_at

        _wait("a heartbeat of the first worker", beating, seconds=60, logs=logs)
        dead = TunerRun.objects.get(agent=agent)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert TunerRun.objects.get(agent=agent).status == "running"

        second = _worker("second", {**env, "ANTHROPIC_API_KEY": ""}, second_log)
        _wait(
            "the second worker completing the cycle",
            lambda: "succeeded in" in second_log.read_text() and TunerRun.objects.get(agent=agent).status == "done",
            seconds=90,
            logs=logs,
        )
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
        model.close()
        broker.kill()
    run = TunerRun.objects.get(agent=agent)
    assert run.pk == dead.pk and run.started_at is not None and dead.started_at is not None
    assert run.started_at > dead.started_at  # claimed again: taken over, not finished by the dead worker
    assert run.generator == "statistical" and len(output(run)["proposals"]) == 1
    assert Proposal.objects.filter(agent=agent).count() == 1
    assert "tuner.run_taken_over" in second_log.read_text()
