"""Demo project for django-pgreplica: a small shop on a primary + streaming replicas."""

from __future__ import annotations

# Load the Celery app with Django so @shared_task binds to it and delay_on_commit works.
from .celery import app as celery_app

__all__ = ["celery_app"]
