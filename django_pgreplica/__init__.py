"""django-pgreplica: PostgreSQL read replicas for Django, with read-your-writes."""

from __future__ import annotations

from .consistency import scope, use_primary

__all__ = ["scope", "use_primary"]
__version__ = "0.1.0"
