"""Which ``pg_stat_replication`` row (and slot) belongs to which replica alias. Pure.

The primary names a standby by the ``application_name`` its WAL receiver sends, which has
nothing to do with the Django alias (the local cluster's alias ``replica`` is node
``replica1``). Each alias is matched by the first rule under which exactly one row qualifies
(and no other alias claimed it already):

1. ``setting``: ``PGREPLICA["REPLICA_APPLICATION_NAMES"] = {"replica": "replica1"}``.
2. ``slot``: the replica's ``primary_slot_name`` (readable without privileges) names a slot
   on the primary whose ``active_pid`` is the row's walsender pid. Works across hosts and
   NAT whenever slots are used, as docs/postgresql.md recommends (one slot per replica).
3. ``application_name``: what the replica's receiver announces (its conninfo's
   ``application_name``, else ``cluster_name``, else "walreceiver") equals the row's.
4. ``address``: the replica's ``inet_server_addr()`` equals the row's ``client_addr``
   (separate hosts or containers; useless when every node is 127.0.0.1).

Rules 2-4 need the replica's own answers, so they only apply to a reachable replica with a
WAL receiver. An alias left unmatched still gets its byte lag from WAL positions (the
primary's current LSN minus the replica's replay LSN) and its state from its receiver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .types import PrimaryObservation, ReplicaObservation, SlotRow, StandbyRow

MATCH_SETTING = "setting"
MATCH_SLOT = "slot"
MATCH_APPLICATION_NAME = "application_name"
MATCH_ADDRESS = "address"


@dataclass(frozen=True)
class Match:
    row: StandbyRow
    method: str


def match_standbys(
    primary: PrimaryObservation,
    replicas: Sequence[ReplicaObservation],
    application_names: Mapping[str, str] | None = None,
) -> dict[str, Match]:
    """alias -> its pg_stat_replication row, by the rules in this module's docstring."""
    rows = list(primary.standbys)
    slots = {slot.slot_name: slot for slot in primary.slots}
    found: dict[str, Match] = {}

    def claim(alias: str, candidates: list[StandbyRow], method: str) -> None:
        # Exactly one candidate among all rows, not merely one left over: when every node
        # is 127.0.0.1, the last row standing is not proof of whose it is.
        taken = {m.row.pid for m in found.values()}
        if len(candidates) == 1 and candidates[0].pid not in taken:
            found[alias] = Match(candidates[0], method)

    names = application_names or {}
    for obs in replicas:
        name = names.get(obs.alias)
        if name:
            claim(obs.alias, [r for r in rows if r.application_name == name], MATCH_SETTING)

    connected = [obs for obs in replicas if obs.reachable and obs.receiver is not None]
    for obs in connected:
        slot_name = obs.primary_slot_name or (obs.receiver.slot_name if obs.receiver else None)
        slot = slots.get(slot_name) if slot_name else None
        if obs.alias not in found and slot is not None and slot.active_pid is not None:
            claim(obs.alias, [r for r in rows if r.pid == slot.active_pid], MATCH_SLOT)
    for obs in connected:
        app = obs.receiver.application_name if obs.receiver else None
        if obs.alias not in found and app:
            claim(obs.alias, [r for r in rows if r.application_name == app], MATCH_APPLICATION_NAME)
    for obs in connected:
        if obs.alias not in found and obs.server_addr:
            claim(obs.alias, [r for r in rows if r.client_addr == obs.server_addr], MATCH_ADDRESS)
    return found


def find_slot(
    obs: ReplicaObservation,
    match: Match | None,
    slots: Sequence[SlotRow],
    guesses: Sequence[str],
    owned: set[str],
) -> SlotRow | None:
    by_name = {slot.slot_name: slot for slot in slots}
    if match is not None:
        for slot in slots:
            if slot.active_pid is not None and slot.active_pid == match.row.pid:
                return slot
    if obs.reachable:
        name = obs.primary_slot_name or (obs.receiver.slot_name if obs.receiver else None)
        return by_name.get(name) if name else None
    # Down: the slot it used when last seen in this process, else one named after it.
    for name in guesses:
        guessed = by_name.get(name)
        if guessed is not None and name not in owned:
            return guessed
    return None
