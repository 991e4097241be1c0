"""Integrations with other libraries, each imported only when that library is installed:
:mod:`.celery` (task tokens, the monitoring task) and :mod:`.prometheus` (metrics)."""
