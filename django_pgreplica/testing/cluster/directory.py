"""What every cluster directory has, plain or Patroni: a JSON file of its settings, the
server binaries it was made with, and the OS user its servers run as."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .binaries import find_bindir, has_server
from .errors import ClusterError
from .processes import OsUser


class ClusterDirectory:
    """Mixed into a cluster class that sets ``dir`` and names its file and ``up`` command."""

    dir: Path
    config_file: str  # e.g. "cluster.json"
    kind: str  # "cluster", "Patroni cluster": what its errors call it
    up_command: str  # what the "no cluster here" error tells to run
    _bindir: Path | None
    _saved_bindir: str | None
    _user: OsUser | None

    def _init_tools(self, bindir: str | os.PathLike[str] | None, saved: dict[str, Any]) -> None:
        self._bindir = Path(bindir) if bindir else None
        self._saved_bindir = saved.get("bindir")
        self._user = None

    @property
    def config_path(self) -> Path:
        return self.dir / self.config_file

    def exists(self) -> bool:
        return self.config_path.is_file()

    def _load_config(self) -> dict[str, Any]:
        try:
            data = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ClusterError(f"unreadable {self.config_path}: {exc}") from None
        return data if isinstance(data, dict) else {}

    def _write_config(self, data: dict[str, Any]) -> None:
        tmp = self.config_path.with_suffix(".tmp")  # a reader never sees half a file
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.config_path)

    def _require_exists(self) -> None:
        if not self.exists():
            raise ClusterError(f"no {self.kind} in {self.dir} (run `{self.up_command}` first)")

    @property
    def bindir(self) -> Path:
        """Server binaries: the explicit/env choice, else the cluster's own, else a search."""
        if self._bindir is None:
            saved = self._saved_bindir
            if not os.environ.get("PGREPLICA_PG_BINDIR") and saved and has_server(saved):
                self._bindir = Path(saved)
            else:
                self._bindir = find_bindir()
        return self._bindir

    @property
    def user(self) -> OsUser:
        if self._user is None:
            self._user = OsUser.detect()
        return self._user


def chosen_port(variable: str, config: Path, free: Callable[[], int]) -> int | None:
    """A test cluster's base port: ``$variable`` if set; None (reuse, on the ports it was
    made with) when its ``config`` exists; else ``free()``, since another checkout's test
    cluster may hold the default ports."""
    explicit = os.environ.get(variable)
    if explicit:
        return int(explicit)
    return None if config.exists() else free()
