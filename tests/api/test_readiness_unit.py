"""The readiness monitor's answers before, during and after its checks (pure logic; the
real /readyz against a live and a killed llama.cpp server is in test_api_ops.py)."""

from __future__ import annotations

import threading

from app.api.readiness import ReadinessMonitor


def test_before_the_first_check_every_check_is_failed_with_the_given_detail() -> None:
    monitor = ReadinessMonitor({"qdrant": lambda: (True, "3 documents")}, before_first="starting")
    assert monitor.report().checks == {"qdrant": (False, "starting")}
    assert monitor.check_now().checks == {"qdrant": (True, "3 documents")}
    assert monitor.report().checks == {"qdrant": (True, "3 documents")}


def test_a_check_that_raises_is_failed_and_named() -> None:
    def broken() -> tuple[bool, str]:
        raise ConnectionError("refused")

    report = ReadinessMonitor({"llm": broken}).check_now()
    assert report.checks == {"llm": (False, "ConnectionError: refused")}


def test_a_stuck_check_turns_the_last_good_report_into_a_failure() -> None:
    release = threading.Event()
    calls = []

    def slow() -> tuple[bool, str]:
        calls.append(1)
        if len(calls) > 1:
            release.wait(30)
        return True, "ok"

    monitor = ReadinessMonitor({"llm": slow}, every_s=0.01, stale_s=0.2)
    monitor.check_now()
    monitor.start()
    try:
        for _ in range(300):  # a bound for a busy machine, not a timing
            if not monitor.report().checks["llm"][0]:
                break
            threading.Event().wait(0.05)
        ok, detail = monitor.report().checks["llm"]
        assert not ok and "no check has finished" in detail
    finally:
        release.set()
        monitor.stop()
