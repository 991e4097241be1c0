"""A real network partition between Django and a replica, on a persistent connection.

The replica alias is pointed at an address inside a network namespace, joined to this
one by a veth pair; a forwarder in the namespace passes each connection to the replica's
unix socket. Taking the namespace's end of the veth down drops every packet in both
directions while the sockets stay open: no RST, no FIN, just silence. A read on the
connection already open then waits for TCP, which ``tcp_user_timeout`` bounds; without
it, the kernel retransmits for about 15 minutes (the control test shows the read still
hanging). Needs root and iproute2's ``ip``; the tests fail, never skip, without them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import close_old_connections, connections

from django_pgreplica.consistency import scope
from django_pgreplica.db import close_quietly
from django_pgreplica.routers import ReplicaRouter
from django_pgreplica.testing.plugin import wait_for_replay
from testproject.shop.models import Product
from tests.support import pgreplica_settings

pytestmark = [
    pytest.mark.django_db(transaction=True, databases="__all__"),
    pytest.mark.netns,
]

CONNECT_TIMEOUT = 2  # seconds
TCP_USER_TIMEOUT = 3000  # milliseconds
BOUNDED = {
    "tcp_user_timeout": TCP_USER_TIMEOUT,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
SETTINGS = {"REPLICAS": ["replica"], "HEALTH_CHECK_INTERVAL": 60, "FAILURE_THRESHOLD": 3}
LISTEN_PORT = 5432

# Runs in the namespace: accept on the veth address, pipe each connection to the replica's
# unix socket (not network-namespaced, so the namespace reaches the host's server).
FORWARDER = """
import socket, sys, threading
listen, path = (sys.argv[1], int(sys.argv[2])), sys.argv[3]
def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try: s.shutdown(socket.SHUT_RDWR)
            except OSError: pass
server = socket.create_server(listen)
while True:
    client, _ = server.accept()
    upstream = socket.socket(socket.AF_UNIX)
    upstream.connect(path)
    for a, b in ((client, upstream), (upstream, client)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
"""


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["netns", "exec", netns, "ip"] if netns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


class Partition:
    """A replica reachable only through a veth into a network namespace."""

    def __init__(self, unix_socket: Path) -> None:
        tag = os.getpid() % 10000
        self.netns = f"pgreplica-part-{os.getpid()}"
        self.host_if, self.ns_if = f"pgrp{tag}h", f"pgrp{tag}n"
        subnet = f"10.231.{os.getpid() % 250}"
        self.host_addr, self.address = f"{subnet}.1", f"{subnet}.2"
        self.forwarder: subprocess.Popen[bytes] | None = None
        _ip("netns", "add", self.netns)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.netns)
            _ip("addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("addr", "add", f"{self.address}/30", "dev", self.ns_if, netns=self.netns)
            _ip("link", "set", self.ns_if, "up", netns=self.netns)
            args = [self.address, str(LISTEN_PORT), str(unix_socket)]
            self.forwarder = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, sys.executable, "-c", FORWARDER, *args]
            )
            self._wait_listening()
        except BaseException:
            self.close()
            raise

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.address, LISTEN_PORT), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def cut(self) -> None:
        """Drop every packet from now on; open sockets see nothing at all."""
        _ip("link", "set", self.ns_if, "down", netns=self.netns)

    def heal(self) -> None:
        _ip("link", "set", self.ns_if, "up", netns=self.netns)

    def close(self) -> None:
        if self.forwarder is not None:
            self.forwarder.kill()
            self.forwarder.wait(5)
        # Deleting one end deletes the pair, at once (a namespace's go asynchronously).
        for cmd in (["link", "del", self.host_if], ["netns", "del", self.netns]):
            subprocess.run(["ip", *cmd], capture_output=True, timeout=10)


@pytest.fixture
def partition(pgreplica_cluster: Any) -> Iterator[Partition]:
    missing = [] if shutil.which("ip") else ["iproute2's `ip` (apt-get install iproute2)"]
    if os.geteuid() != 0:
        missing.append("root (CAP_NET_ADMIN) to create a network namespace and a veth pair")
    if missing:
        pytest.fail(f"the partition tests need {' and '.join(missing)}", pytrace=False)
    node = pgreplica_cluster.node("replica1")
    try:
        made = Partition(pgreplica_cluster.socket_dir / f".s.PGSQL.{node.port}")
    except (RuntimeError, OSError) as exc:
        pytest.fail(
            f"could not build the network namespace (needs root, iproute2 and kernel veth "
            f"and netns support): {exc}",
            pytrace=False,
        )
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def product() -> Product:
    with scope():
        product = Product.objects.create(name="Lamp", slug="lamp", price=10)
    wait_for_replay()
    return product


@pytest.fixture
def behind(partition: Partition) -> Iterator[Any]:
    """Point the replica alias at the namespace, with persistent connections; returns a
    function that sets the alias's libpq options and health checks."""
    conn = connections["replica"]
    saved = dict(conn.settings_dict)
    conn.close()

    def configure(options: dict[str, Any], health_checks: bool = False) -> None:
        conn.settings_dict.update(
            HOST=partition.address,
            PORT=str(LISTEN_PORT),
            CONN_MAX_AGE=60,
            CONN_HEALTH_CHECKS=health_checks,
            OPTIONS={**saved["OPTIONS"], "connect_timeout": CONNECT_TIMEOUT, **options},
        )

    try:
        yield configure
    finally:
        close_quietly("replica")
        conn.settings_dict.clear()
        conn.settings_dict.update(saved)


def timed_read() -> tuple[str, float]:
    """One request: Django's request signals check connections at its start and end."""
    close_old_connections()
    started = time.monotonic()
    with scope():
        alias = ReplicaRouter().db_for_read(Product)
        assert list(Product.objects.values_list("name", flat=True)) == ["Lamp"]
    took = time.monotonic() - started
    close_old_connections()
    return alias, took


@pytest.mark.parametrize(
    ("health_checks", "bound"),
    [
        # the query waits tcp_user_timeout, then reruns elsewhere
        (False, TCP_USER_TIMEOUT / 1000),
        # the health check waits tcp_user_timeout, the reconnect connect_timeout
        (True, TCP_USER_TIMEOUT / 1000 + CONNECT_TIMEOUT),
    ],
)
def test_a_partitioned_replica_is_given_up_within_tcp_user_timeout(
    partition: Partition, behind: Any, product: Product, health_checks: bool, bound: float
) -> None:
    behind(BOUNDED, health_checks)
    with pgreplica_settings(**SETTINGS):
        assert timed_read()[0] == "replica"  # a persistent connection through the veth
        partition.cut()
        first = timed_read()  # asserts the rows: the request does not fail
        rest = [timed_read() for _ in range(5)]
    assert 0.8 * TCP_USER_TIMEOUT / 1000 < first[1] < bound + 1.0, first
    assert all(alias == "default" and took < 0.5 for alias, took in rest), rest


def test_without_tcp_user_timeout_the_read_hangs_until_the_network_heals(
    partition: Partition, behind: Any, product: Product
) -> None:
    """The control: the same partition holds a read on a connection without the bound
    (here until the partition heals; left alone, about 15 minutes)."""
    behind({})
    ready, go = threading.Event(), threading.Event()
    outcome: list[Any] = []

    def request_thread() -> None:
        try:
            with pgreplica_settings(**SETTINGS):
                outcome.append(timed_read())  # its own (thread's) persistent connection
                ready.set()
                go.wait(10)
                outcome.append(timed_read())
        except BaseException as exc:
            outcome.append(exc)
        finally:
            ready.set()
            connections.close_all()

    worker = threading.Thread(target=request_thread, daemon=True)
    worker.start()
    assert ready.wait(10) and outcome and outcome[0][0] == "replica", outcome
    partition.cut()
    go.set()
    worker.join(TCP_USER_TIMEOUT / 1000 + CONNECT_TIMEOUT + 2.0)
    hung = worker.is_alive()
    partition.heal()  # TCP's next retransmission gets through
    worker.join(30)
    assert hung, f"the read did not hang without tcp_user_timeout: {outcome}"
    assert not worker.is_alive() and len(outcome) == 2, outcome
    assert isinstance(outcome[1], tuple), outcome[1]  # and then it succeeded
