"""The Celery app. Configured from Django settings (``CELERY_*``)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loopsite.settings")

app = Celery("loopsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
