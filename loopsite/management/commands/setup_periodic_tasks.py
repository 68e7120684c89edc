import json
from typing import Any

from django.core.management.base import BaseCommand
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from approvals.tasks import digest_task, proposals_expire_task, watchdog_task
from auditlog.tasks import partitions_ensure_task, retention_task
from loopsite.tasks import outbox_drain_task
from thresholds.models import Agent
from tuner.tasks import tuner_weekly_task
from webhooks.tasks import webhook_deliver_due_task

TUNER_TASK = str(tuner_weekly_task.name)


class Command(BaseCommand):
    help = (
        "Create or update the beat schedules: each agent's tuner weekly on Monday 03:00 in its timezone, and the "
        "watchdog hourly, expiry of undecided proposals daily, the decision log's partitions daily and its retention "
        "on Sunday 02:30 UTC, the approvers' digest on Monday 08:00 UTC, and the "
        "outbox drain and the webhook retries every minute. Schedules stay editable in the admin; running this again "
        "keeps edited crontabs."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for agent in Agent.objects.order_by("agent_id"):
            name = f"tuner weekly: {agent.agent_id}"
            existing = PeriodicTask.objects.filter(name=name).first()
            if existing is not None and existing.crontab is not None:
                # Someone may have edited the time in the admin: keep it, refresh the task's arguments.
                existing.task, existing.args, existing.enabled = TUNER_TASK, json.dumps([agent.pk]), True
                existing.save()
                self.stdout.write(f"kept {name} ({existing.crontab})")
                continue
            crontab, _ = CrontabSchedule.objects.get_or_create(
                minute="0",
                hour="3",
                day_of_week="1",
                day_of_month="*",
                month_of_year="*",
                timezone=agent.timezone or "UTC",
            )
            PeriodicTask.objects.update_or_create(
                name=name,
                defaults={"task": TUNER_TASK, "crontab": crontab, "interval": None, "args": json.dumps([agent.pk])},
            )
            self.stdout.write(f"scheduled {name}: Monday 03:00 {agent.timezone or 'UTC'}")
        hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.HOURS)
        PeriodicTask.objects.update_or_create(
            name="watchdog hourly",
            defaults={"task": str(watchdog_task.name), "interval": hourly, "crontab": None, "args": "[]"},
        )
        self.stdout.write("scheduled watchdog hourly")
        daily, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.DAYS)
        PeriodicTask.objects.update_or_create(
            name="proposal expiry daily",
            defaults={"task": str(proposals_expire_task.name), "interval": daily, "crontab": None, "args": "[]"},
        )
        self.stdout.write("scheduled proposal expiry daily")
        PeriodicTask.objects.update_or_create(
            name="decision partitions daily",
            defaults={"task": str(partitions_ensure_task.name), "interval": daily, "crontab": None, "args": "[]"},
        )
        self.stdout.write("scheduled decision partitions daily")
        sunday, _ = CrontabSchedule.objects.get_or_create(
            minute="30", hour="2", day_of_week="0", day_of_month="*", month_of_year="*", timezone="UTC"
        )
        PeriodicTask.objects.update_or_create(
            name="decision retention weekly",
            defaults={"task": str(retention_task.name), "crontab": sunday, "interval": None, "args": "[]"},
        )
        self.stdout.write("scheduled decision retention: Sunday 02:30 UTC")
        monday, _ = CrontabSchedule.objects.get_or_create(
            minute="0", hour="8", day_of_week="1", day_of_month="*", month_of_year="*", timezone="UTC"
        )
        PeriodicTask.objects.update_or_create(
            name="approvers digest weekly",
            defaults={"task": str(digest_task.name), "crontab": monday, "interval": None, "args": "[]"},
        )
        self.stdout.write("scheduled approvers digest: Monday 08:00 UTC")
        minutely, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.MINUTES)
        PeriodicTask.objects.update_or_create(
            name="outbox drain every minute",
            defaults={"task": str(outbox_drain_task.name), "interval": minutely, "crontab": None, "args": "[]"},
        )
        self.stdout.write("scheduled outbox drain: every minute")
        PeriodicTask.objects.update_or_create(
            name="webhook retries every minute",
            defaults={"task": str(webhook_deliver_due_task.name), "interval": minutely, "crontab": None, "args": "[]"},
        )
        self.stdout.write("scheduled webhook retries: every minute")
