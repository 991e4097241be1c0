"""The one exception of the cluster tool."""

from __future__ import annotations

__all__ = ["ClusterError"]


class ClusterError(Exception):
    """Anything that stops a cluster command; the message is meant for humans."""
