"""Shared helpers for the integration tests (real primary + two streaming replicas)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from django.conf import settings
from django.db import connections
from django.test import override_settings

from django_pgreplica import consistency, health
from django_pgreplica.db import close_quietly

REPLICA_NODES = {"replica": "replica1", "replica2": "replica2"}  # alias -> cluster node


def pgreplica_settings(**overrides: Any) -> override_settings:
    """override_settings for PGREPLICA, keeping the keys not mentioned."""
    return override_settings(PGREPLICA={**settings.PGREPLICA, **overrides})


def reset_routing() -> None:
    consistency.reset_state()
    health.registry.reset()
    for alias in connections:
        close_quietly(alias)


def served_by(alias: str, query: Any) -> bool:
    """Evaluate a queryset; True when it ran on ``alias`` (by query capture)."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connections[alias]) as captured:
        list(query)
    return len(captured) > 0


class BlackholeProxy:
    """A TCP proxy in front of a replica that can be told to stop forwarding.

    While blackholed it still accepts connections (the kernel completes the handshake) but
    never answers, which is what a dropped-packets network looks like to a client waiting
    for the server's first message.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.blackholed = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.blackholed.is_set():
                self._held.append(client)  # keep it open, say nothing
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.blackholed.is_set():
                    continue  # swallow: packets go nowhere
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with suppress(OSError):
                    sock.close()

    @contextmanager
    def blackhole(self) -> Iterator[None]:
        self.blackholed.set()
        try:
            yield
        finally:
            self.blackholed.clear()
            for sock in self._held:
                sock.close()
            self._held.clear()

    def close(self) -> None:
        self.listener.close()


def record_calls(monkeypatch: Any, owner: Any, name: str) -> list[tuple[Any, ...]]:
    """Let ``owner.name`` work as before while recording each call's arguments."""
    calls: list[tuple[Any, ...]] = []
    original = getattr(owner, name)

    def recording(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(owner, name, recording)
    return calls
