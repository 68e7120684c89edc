"""The configured tier: the cycle task run by a real Celery worker against Redis and PostgreSQL."""

import os
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
