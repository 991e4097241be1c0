"""A few seconds of the load + fault harness (benchmarks/loadtest.py), as a regression gate.

The full run (all phases, 32 clients) is a benchmark, not a test: see docs/benchmarks.md.
This one runs gunicorn with 2 workers and 4 clients through a healthy phase and a replica
SIGKILL + restart, on a private cluster (own directory, ports from 63432), and asks for what
the full run asks for: no failed request, no read-your-writes violation, no lost write.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from benchmarks.loadtest import Options, run
from tests.clusters import private_dir


@pytest.mark.skipif(
    not Path(sys.executable).with_name("gunicorn").exists(), reason="gunicorn not installed"
)
def test_load_with_a_killed_replica(tmp_path: Path) -> None:
    opts = Options(
        dir=private_dir("load-smoke"),
        port=63432,  # the first free block of 3 from here
        clients=4,
        duration=5.0,
        phases=("healthy", "replica-killed"),
        workers=2,
        threads=2,
        label=f"smoke-{os.getpid()}",
        logdir=tmp_path / "logs",
        json_path=tmp_path / "loadtest.json",
        monitor=False,
        quiet=True,
    )
    report = run(opts)

    phases = {phase["name"]: phase for phase in report["windows"]}
    assert list(phases) == ["healthy", "replica-killed"]
    for name, phase in phases.items():
        assert phase["requests"] > 20, (name, phase["requests"])
        assert phase["acknowledged"] > 0, (name, phase["statuses"])
        assert phase["failures"] == 0, (name, phase["failure_examples"])
        assert phase["violations"] == 0, (name, phase["violation_examples"])
        assert phase["lost_writes"] == 0, (name, phase["events"])
    killed = phases["replica-killed"]
    assert [(f["kind"], f["errors"]) for f in killed["faults"]] == [("kill", [])]
    # Replicas served reads before and after the kill, and the survivor took over.
    assert phases["healthy"]["replica_share"] > 0.5
    assert killed["reads_by_database"].get("replica2", 0) > 0
