"""Write detection on the primary connection, and writes made outside any scope."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from .context import active_state
from .positions import current_wal_lsn

logger = logging.getLogger("django_pgreplica.consistency")

# Statements that never change data. Anything else seen on the primary counts as a write,
# so raw SQL, update(), bulk_create() and deletes all pin (db_for_write alone misses them).
_READ_KEYWORDS = frozenset(
    {
        "SELECT", "SHOW", "EXPLAIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "START",
        "COMMIT", "END", "SET", "RESET", "VALUES", "FETCH", "DECLARE", "CLOSE", "MOVE",
        "TABLE", "DISCARD",
    }
)  # fmt: skip
_FIRST_WORD = re.compile(r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*\(?\s*([A-Za-z]+)", re.DOTALL)
_DATA_CHANGING = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


def is_write_sql(sql: str) -> bool:
    match = _FIRST_WORD.match(sql)
    if match is None:
        return True
    word = match.group(1).upper()
    if word == "WITH":  # a CTE may hide an INSERT/UPDATE/DELETE
        return _DATA_CHANGING.search(sql) is not None
    return word not in _READ_KEYWORDS


def write_detector(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    """``execute_wrapper`` for the primary: marks the current scope as having written.

    A write outside any scope (a script, a test body, ``client.force_login()``) marks the
    process instead: see :class:`UnscopedWrites`.
    """
    if isinstance(sql, str) and is_write_sql(sql):
        state = active_state()
        if state is None:
            unscoped_writes.dirty = unscoped_writes.pending = True
        else:
            state.mark_write()
    return execute(sql, params, many, context)


class UnscopedWrites:
    """Writes made outside any request or task, as a WAL position every read must respect.

    Code outside a scope keeps no pin, but what it wrote must not look lost to the
    requests and tasks of the same process that come after it: a test that logs a user
    in and then requests a page, a script that creates a row and then serves it. The
    first routing decision after such writes reads the primary's position once; until the
    replicas have replayed it, a replica that has not is skipped (reason ``token-wait``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget earlier writes (tests: the previous test's flush is nothing to wait for)."""
        self.dirty = False  # written since the position was last read
        self.lsn: int | None = None  # position the replicas must reach
        self.pending = False  # dirty or lsn set: the router's one cheap check

    def required(self, primary: str) -> int | None:
        """The position reads must wait for, if any (hot path: two attribute reads)."""
        if self.dirty:
            with self._lock:
                if self.dirty:
                    self.dirty = False
                    try:
                        self.lsn = current_wal_lsn(primary)
                    except Exception as exc:  # primary down: nothing newer can be read
                        logger.warning("primary %s: WAL position unreadable (%s)", primary, exc)
                    self.pending = self.dirty or self.lsn is not None
        return self.lsn

    def passed(self, lsn: int) -> None:
        """Every replica has replayed ``lsn``: stop checking (unless newer writes came)."""
        if self.lsn == lsn:
            self.lsn = None
            self.pending = self.dirty


unscoped_writes = UnscopedWrites()
