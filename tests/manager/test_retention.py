"""``RAY_QUEUE_RETENTION_S``: how long the manager remembers finished workloads."""

from __future__ import annotations

import logging

import pytest

from ray_queue.manager.__main__ import main
from ray_queue.manager.actor import DEFAULT_RETENTION_S, _retention_or_default, retention_s

pytestmark = pytest.mark.timeout(30)


def test_retention_defaults_to_an_hour_and_takes_seconds() -> None:
    assert retention_s({}) == DEFAULT_RETENTION_S == 3600
    assert retention_s({"RAY_QUEUE_RETENTION_S": ""}) == DEFAULT_RETENTION_S
    assert retention_s({"RAY_QUEUE_RETENTION_S": "300"}) == 300
    assert retention_s({"RAY_QUEUE_RETENTION_S": "0.5"}) == 0.5


@pytest.mark.parametrize("raw", ["0", "-5", "an hour", "nan", "inf"])
def test_a_retention_that_would_forget_at_once_or_never_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match=r"RAY_QUEUE_RETENTION_S.*in seconds"):
        retention_s({"RAY_QUEUE_RETENTION_S": raw})


def test_the_manager_process_refuses_a_bad_retention_before_starting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No Ray address is reachable here: the process must stop before it tries one.
    monkeypatch.setenv("RAY_QUEUE_RETENTION_S", "ten minutes")
    assert main(["--address", "127.0.0.1:1"]) == 2
    assert "RAY_QUEUE_RETENTION_S='ten minutes'" in capsys.readouterr().err


def test_the_actor_keeps_the_default_and_says_why_when_the_setting_is_bad(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RAY_QUEUE_RETENTION_S", "-1")
    with caplog.at_level(logging.ERROR, logger="ray_queue.manager.actor"):
        assert _retention_or_default() == DEFAULT_RETENTION_S
    assert "RAY_QUEUE_RETENTION_S='-1'" in caplog.records[0].error  # type: ignore[attr-defined]
