"""Development and test tooling; the runtime never imports it.

- :mod:`.cluster` — a local primary with streaming replicas
  (``python -m django_pgreplica.testing.cluster up``), as a command and a Python API;
- :mod:`.plugin` — the pytest plugin (``pytest_plugins = ["django_pgreplica.testing.plugin"]``):
  a session cluster, DATABASES pointed at it, fault helpers;
- :mod:`.aliases` — :func:`~.aliases.wait_for_replay` and :func:`~.aliases.replay_paused`
  on Django aliases (the plugin re-exports them);
- :mod:`.replay` — the replay-wait loop shared by ``wait_for_replay`` and
  :meth:`Cluster.wait_replayed <django_pgreplica.testing.cluster.Cluster.wait_replayed>`.
"""
