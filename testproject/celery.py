"""Celery app for the demo: ``celery -A testproject worker -B``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

app = Celery("testproject")
# Every CELERY_* Django setting configures Celery (CELERY_BROKER_URL -> broker_url, ...).
app.config_from_object("django.conf:settings", namespace="CELERY")
# Finds tasks.py in installed apps: shop.tasks and django_pgreplica.tasks.
app.autodiscover_tasks()
