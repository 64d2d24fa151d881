"""The Kueue parity table in docs/scheduling.md (``python -m tests.engine.kueue_parity``).

Counted from the ported cases themselves, so the table cannot claim more than the tests
check (``test_parity_table.py`` fails when the docs and the cases disagree).
"""

from __future__ import annotations

from collections.abc import Callable

from tests.engine.kueue_parity import (
    test_fair_preemption_table,
    test_flavor_assignment_table,
    test_hierarchical_preemption_table,
    test_preemption_table,
    test_schedule_fs_table,
    test_schedule_table,
)

FLAVORS = "`pkg/scheduler/flavorassigner/flavorassigner_test.go`"

#: Each ported Kueue table: (Kueue file and test, how its cases here count up).
TABLES: tuple[tuple[str, Callable[[], dict[str, int]]], ...] = (
    (
        "`pkg/scheduler/preemption/preemption_test.go` `TestPreemption`",
        test_preemption_table.parity_counts,
    ),
    (
        "`pkg/scheduler/preemption/preemption_fair_test.go` `TestFairPreemptions`",
        test_fair_preemption_table.parity_counts,
    ),
    (
        "`pkg/scheduler/preemption/preemption_hierarchical_test.go` `TestHierarchicalPreemptions`",
        test_hierarchical_preemption_table.parity_counts,
    ),
    ("`pkg/scheduler/scheduler_test.go` `TestSchedule`", test_schedule_table.parity_counts),
    (
        "`pkg/scheduler/scheduler_fs_test.go` `TestScheduleForFairSharing`",
        test_schedule_fs_table.parity_counts,
    ),
    (f"{FLAVORS} `TestAssignFlavors`", test_flavor_assignment_table.parity_counts),
    (
        f"{FLAVORS} `TestReclaimBeforePriorityPreemption`",
        test_flavor_assignment_table.reclaim_parity_counts,
    ),
    (f"{FLAVORS} `TestHierarchical`", test_flavor_assignment_table.hierarchical_parity_counts),
)
COLUMNS = ("ported", "passing", "departures", "differs", "out_of_scope", "unreachable")


def markdown_table() -> str:
    header = "| Kueue table | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |\n"
    rows = [header, "|---" * (len(COLUMNS) + 1) + "|\n"]
    for name, parity_counts in TABLES:
        counts = parity_counts()
        rows.append(f"| {name} | " + " | ".join(str(counts[c]) for c in COLUMNS) + " |\n")
    return "".join(rows)
