import json
from typing import Any

from django.core.management.base import BaseCommand
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from thresholds.models import Agent

TUNER_TASK = "tuner.tasks.tuner_weekly_task"


def _watchdog_task_name() -> str:
    """The registered name of the watchdog task (its module may give it its own)."""
    try:
        from approvals.tasks import watchdog_task

        return str(watchdog_task.name)
    except (ImportError, AttributeError):
        return "approvals.tasks.watchdog_task"


class Command(BaseCommand):
    help = (
        "Create or update the beat schedules: each agent's tuner weekly on Monday 03:00 in its timezone, and the "
        "watchdog hourly. Schedules stay editable in the admin; running this again keeps edited crontabs."
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
            defaults={"task": _watchdog_task_name(), "interval": hourly, "crontab": None, "args": "[]"},
        )
        self.stdout.write("scheduled watchdog hourly")
