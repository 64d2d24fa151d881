"""Structured logs (``ray_queue.logs``): the logfmt line a record becomes, read back by
``parse``; and the manager's per-cycle line as it really comes out of ``ManagerCore``."""

from __future__ import annotations

import ast
import io
import logging
import re
import sys
from pathlib import Path

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config_loader import load_config
from ray_queue.grpc.local_manager import LocalManager
from ray_queue.logs import LogfmtFormatter, install, parse
from tests.grpc.conftest import CONFIG_YAML, request

ROOT = Path(__file__).resolve().parents[1]
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def record(msg: str, *, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("tests.logs")
    return logger.makeRecord(logger.name, level, __file__, 1, msg, (), None, extra=extra)


def test_fixed_keys_first_then_the_fields_in_order() -> None:
    line = LogfmtFormatter().format(record("cycle", decisions=3, schedule_ms=1.25, cq="cq-a"))
    assert line.split(" ")[1:] == [
        "level=info",
        "logger=tests.logs",
        "msg=cycle",
        "decisions=3",
        "schedule_ms=1.25",
        "cq=cq-a",
    ]
    assert TS.match(parse(line)["ts"])


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("two words", id="space"),
        pytest.param('say "hi"', id="quotes"),
        pytest.param("a=b", id="equals"),
        pytest.param("back\\slash", id="backslash"),
        pytest.param("line one\nline two\ttab", id="newline-and-tab"),
        pytest.param("", id="empty"),
    ],
)
def test_values_that_need_quoting_survive_the_round_trip(value: str) -> None:
    line = LogfmtFormatter().format(record("m e s s a g e", error=value))
    assert "\n" not in line  # one record, one line
    fields = parse(line)
    assert (fields["msg"], fields["error"]) == ("m e s s a g e", value)


def test_an_exception_is_one_escaped_field() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger = logging.getLogger("tests.logs")
        rec = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = LogfmtFormatter().format(rec)
    assert "\n" not in line
    fields = parse(line)
    assert fields["level"] == "error"
    assert fields["exc"].startswith("Traceback") and "RuntimeError: boom" in fields["exc"]


def test_percent_style_calls_still_read() -> None:
    logger = logging.getLogger("tests.logs")
    rec = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "%d left", (3,), None)
    assert parse(LogfmtFormatter().format(rec))["msg"] == "3 left"


def test_install_replaces_a_basic_config_handler() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        stream = io.StringIO()
        root.addHandler(logging.StreamHandler(io.StringIO()))  # what basicConfig adds
        install(logging.INFO, stream=stream)
        assert [type(h.formatter) for h in root.handlers if type(h) is logging.StreamHandler] == [
            LogfmtFormatter
        ]
        logging.getLogger("tests.logs.install").info("hello", extra={"n": 1})
        assert parse(stream.getvalue().strip())["n"] == "1"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_the_managers_cycle_line_keeps_its_content(caplog: pytest.LogCaptureFixture) -> None:
    """The real per-cycle line of ManagerCore (run by the development server's backend):
    decisions, workloads persisted, and each phase's duration, as fields."""
    caplog.set_level(logging.DEBUG, logger="ray_queue.manager.core")
    backend = LocalManager(load_config(CONFIG_YAML), ManualClock(1_000.0))
    try:
        backend.submit_many([request("a"), request("b")])
    finally:
        backend.close()
    cycles = [r for r in caplog.records if r.name == "ray_queue.manager.core"]
    assert cycles, "no cycle line logged"
    fields = parse(LogfmtFormatter().format(cycles[-1]))
    assert (fields["level"], fields["logger"], fields["msg"]) == (
        "debug",
        "ray_queue.manager.core",
        "cycle",
    )
    assert (fields["decisions"], fields["persisted"]) == ("2", "2")  # both admitted
    for phase in ("schedule_ms", "persist_ms", "act_ms"):
        assert float(fields[phase]) >= 0.0


#: Code that runs in users' own processes (drivers and their Ray workers), under their
#: logging setup, whose formatter shows no ``extra`` field: it keeps what varies in the
#: message, or the user would read "polling the manager failed" without the error.
IN_USERS_PROCESSES = ("ray_queue/client/", "ray_queue/capture/")
_LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


def _formatted_log_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _LEVELS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "logger"
        ):
            continue
        if len(node.args) > 1 or (node.args and isinstance(node.args[0], ast.JoinedStr)):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_the_server_side_logs_a_constant_message_with_fields() -> None:
    """The manager, the gRPC server, the store and the autoscaler log a constant message
    and put what varies in ``extra`` fields (this module's docstring), so a line is found
    by its message and read by its keys."""
    files = [
        p
        for package in ("ray_queue", "autoscaler")
        for p in sorted((ROOT / package).rglob("*.py"))
        if "/grpc/gen/" not in p.as_posix()
        and not p.relative_to(ROOT).as_posix().startswith(IN_USERS_PROCESSES)
    ]
    assert len(files) > 50
    offenders = [call for path in files for call in _formatted_log_calls(path)]
    assert not offenders, "log a constant message with extra={...} fields: " + ", ".join(
        offenders
    )
