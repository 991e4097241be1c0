"""Django looks for the app's models here; the lag history belongs to monitoring."""

from __future__ import annotations

from .monitoring.samples import ReplicationSample

__all__ = ["ReplicationSample"]
