"""``replication_alert``: hook replication problems to Slack, PagerDuty, e-mail...

Sent by the ``monitor_replication`` task (:func:`django_pgreplica.monitoring.cycle.run_cycle`)
on every run, once per replica whose status is not OK, once when a replica is OK again
after a problem (``previous`` says what it was), once per replication slot that is not OK
(``slot`` set), and once with ``replica=None`` when the primary is unreachable. Receivers
get, as keyword arguments:

- ``sender``: :class:`django_pgreplica.monitoring.Report`
- ``report``: the whole :class:`~django_pgreplica.monitoring.Report`
- ``replica``: the replica alias, or None for the primary (and for a slot of no replica)
- ``slot``: the replication slot's name for a slot alert, else None
- ``replica_report``: its :class:`~django_pgreplica.monitoring.ReplicaReport`, or None
- ``level``: :class:`~django_pgreplica.monitoring.Status` now
- ``previous``: the replica's status in its last stored sample, or None
- ``message``: one line for a human, e.g. ``"replica replica CRITICAL: replay lag 42.0s > 30s"``

A receiver that raises is logged and does not stop the others (``send_robust``)::

    from django.dispatch import receiver
    from django_pgreplica.monitoring import Status
    from django_pgreplica.signals import replication_alert

    @receiver(replication_alert)
    def page(sender, level, message, **kwargs):
        if level >= Status.CRITICAL:
            pagerduty.trigger(message)
"""

from __future__ import annotations

from django.dispatch import Signal

replication_alert = Signal()
