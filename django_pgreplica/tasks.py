"""Celery's autodiscovery looks for ``<app>.tasks``: the beat task lives in
:mod:`django_pgreplica.contrib.celery` (needs the ``celery`` extra)."""

from __future__ import annotations

from .contrib.celery import monitor_replication

__all__ = ["monitor_replication"]
