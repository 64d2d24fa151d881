"""``benchmarks.process_cpu`` attributes CPU time to the processes that spent it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks import process_cpu

# Burns 0.3 s of CPU, says so, then waits, using none, until the test kills it.
_BUSY = (
    "import signal, time\nend = time.process_time() + 0.3\n"
    "while time.process_time() < end: pass\n"
    "print('burnt', flush=True)\nsignal.pause()\n"
)


@pytest.mark.timeout(60)
def test_a_busy_child_is_counted_under_its_role_and_an_idle_driver_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", _BUSY], stdout=subprocess.PIPE, text=True)
    try:
        named = {child.pid: "busy_child"}
        before = process_cpu.snapshot(named)
        assert before[child.pid][0] == "busy_child"
        assert child.stdout is not None
        # Blocks (using no CPU) until the child has burnt its share, however slow the machine.
        assert child.stdout.readline() == "burnt\n"
        spent = process_cpu.spent(before, process_cpu.snapshot(named))
    finally:
        child.kill()
        child.wait()
    assert 0.2 <= spent["busy_child"] <= 0.5
    assert spent["driver"] < 0.1
    assert spent["total"] == pytest.approx(sum(v for k, v in spent.items() if k != "total"))


def test_a_process_that_started_in_between_counts_from_zero() -> None:
    before: process_cpu.Snapshot = {1: ("driver", 2.0)}
    after: process_cpu.Snapshot = {1: ("driver", 2.5), 7: ("ray_workers", 0.25)}
    assert process_cpu.spent(before, after) == {
        "driver": 0.5,
        "ray_workers": 0.25,
        "total": 0.75,
    }
