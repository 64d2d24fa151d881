"""The client handles' state machines (``ray_queue/client/lifecycle.py``), as tables.

Each machine's edges are written out again here, as the specification: every edge it
lists is taken to the phase it names, and every other (phase, event) pair raises
``HandleTransitionError``. A change to a table that is not also made here fails, so an
edge is never added or dropped by accident. Then the properties the handles rely on:
the manager's events race the driver's own progress, so the inputs that come from the
manager are legal in every phase; every phase is reachable; every phase can end.
"""

from __future__ import annotations

import itertools
from enum import StrEnum

import pytest

from ray_queue.client.lifecycle import (
    ACTOR,
    GROUP,
    TASK,
    ActorEvent,
    ActorPhase,
    GroupEvent,
    GroupPhase,
    HandleTransitionError,
    Machine,
    TaskEvent,
    TaskPhase,
)
from ray_queue.errors import InvalidTransitionError, RayQueueError

#: phase, event → phase, one edge a line.
TASK_SPEC = """
waiting     refuse     failed
launching   refuse     failed
running     refuse     failed
staged      refuse     failed
guest       refuse     failed
ran_staged  refuse     returned
returned    refuse     returned
failed      refuse     failed
waiting     admit      launching
launching   admit      launching
running     admit      running
staged      admit      guest
guest       admit      guest
ran_staged  admit      returned
returned    admit      returned
failed      admit      failed
launching   launch     running
running     launch     running
guest       launch     running
waiting     take_over  running
waiting     stage      staged
staged      promote    running
guest       promote    running
ran_staged  promote    returned
running     result     returned
guest       result     returned
staged      result     ran_staged
failed      result     failed
running     settle     returned
guest       settle     returned
staged      settle     ran_staged
waiting     requeue    waiting
launching   requeue    waiting
running     requeue    waiting
staged      requeue    waiting
guest       requeue    waiting
ran_staged  requeue    ran_staged
returned    requeue    returned
failed      requeue    failed
waiting     stop       failed
launching   stop       failed
running     stop       failed
staged      stop       failed
guest       stop       failed
ran_staged  stop       returned
returned    stop       returned
failed      stop       failed
"""

ACTOR_SPEC = """
waiting  refuse   failed
failed   refuse   failed
waiting  admit    created
created  admit    created
failed   admit    failed
waiting  requeue  waiting
created  requeue  waiting
failed   requeue  failed
waiting  stop     failed
created  stop     failed
failed   stop     failed
"""

GROUP_SPEC = """
waiting   refuse   ended
removed   refuse   removed
waiting   admit    admitted
admitted  admit    admitted
ended     admit    ended
removed   admit    removed
waiting   requeue  waiting
admitted  requeue  waiting
ended     requeue  ended
removed   requeue  removed
waiting   end      ended
admitted  end      ended
ended     end      ended
removed   end      removed
waiting   remove   removed
admitted  remove   removed
ended     remove   removed
"""

#: machine, its phases, its events, its specification, its terminal phases, the events
#: the manager (not this driver) causes.
CASES: dict[str, tuple[Machine, type[StrEnum], type[StrEnum], str, set[str], set[str]]] = {  # type: ignore[type-arg]
    "task": (
        TASK,
        TaskPhase,
        TaskEvent,
        TASK_SPEC,
        {"returned", "failed"},
        {"refuse", "admit", "requeue", "stop"},
    ),
    "actor": (ACTOR, ActorPhase, ActorEvent, ACTOR_SPEC, {"failed"}, {"admit", "requeue", "stop"}),
    "group": (
        GROUP,
        GroupPhase,
        GroupEvent,
        GROUP_SPEC,
        {"ended", "removed"},
        {"admit", "requeue", "end"},
    ),
}


def spec(text: str) -> dict[tuple[str, str], str]:
    edges: dict[tuple[str, str], str] = {}
    for line in text.strip().splitlines():
        phase, event, to = line.split()
        assert (phase, event) not in edges, f"edge listed twice: {line}"
        edges[phase, event] = to
    return edges


def every_pair() -> list[tuple[str, str, str]]:
    return [
        (name, phase.value, event.value)
        for name, (_, phases, events, *_) in CASES.items()
        for phase, event in itertools.product(phases, events)
    ]


@pytest.mark.parametrize(
    ("name", "phase", "event"), every_pair(), ids=["-".join(pair) for pair in every_pair()]
)
def test_every_pair_is_the_specified_edge_or_raises(name: str, phase: str, event: str) -> None:
    machine, phases, events, text, *_ = CASES[name]
    expected = spec(text).get((phase, event))
    if expected is None:
        with pytest.raises(HandleTransitionError, match=f"{phase} cannot take {event}"):
            machine.step(phases(phase), events(event))
    else:
        assert machine.step(phases(phase), events(event)) == phases(expected)


@pytest.mark.parametrize("name", CASES)
def test_the_table_has_no_edge_the_specification_lacks(name: str) -> None:
    machine, _, _, text, *_ = CASES[name]
    table = {(p.value, e.value): to.value for (p, e), to in machine.edges.items()}
    assert table == spec(text)


@pytest.mark.parametrize("name", CASES)
def test_the_managers_events_are_legal_in_every_phase(name: str) -> None:
    # Events race the driver's own progress (a resync repeats admissions; a preemption
    # reaches a task that just returned): a handle must never raise on one.
    machine, phases, events, _, _, from_manager = CASES[name]
    for phase, event in itertools.product(phases, from_manager):
        machine.step(phase, events(event))


@pytest.mark.parametrize("name", CASES)
def test_every_phase_is_reachable_and_can_end(name: str) -> None:
    machine, phases, _, _, terminal, _ = CASES[name]
    graph: dict[StrEnum, set[StrEnum]] = {}
    for (phase, _), to in machine.edges.items():
        graph.setdefault(phase, set()).add(to)

    def reach(start: StrEnum) -> set[StrEnum]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert reach(machine.initial) == set(phases)
    for phase in phases:
        assert {p.value for p in reach(phase)} & terminal, f"{phase} can never end"


def test_terminal_phases_only_lead_to_terminal_phases() -> None:
    for machine, _, _, _, terminal, _ in CASES.values():
        for (phase, event), to in machine.edges.items():
            if phase.value in terminal:
                assert to.value in terminal, f"{machine.name}: {phase} -{event}-> {to}"


def test_the_error_is_a_transition_error_under_the_root() -> None:
    with pytest.raises(InvalidTransitionError) as raised:
        TASK.step(TaskPhase.RETURNED, TaskEvent.STAGE)
    assert isinstance(raised.value, RayQueueError)
    assert "queued task that is returned cannot take stage" in str(raised.value)
