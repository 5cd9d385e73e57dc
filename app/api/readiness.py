"""Readiness kept fresh in the background: /readyz answers from the last check and never
waits for one. Asking a busy CPU LLM server for its models took 200–500 ms under load, and
the store check waits for a server store's read lock, so a probe that checked inline paid
both on every call (bench/README.md, api_load.py).

A thread checks the store and the LLM every CHECK_EVERY_S; the answer says how old its
check is. A check that has not finished for STALE_S (an LLM server that hangs instead of
refusing) makes the answer not ready, so a dead LLM shows within a few seconds either way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CHECK_EVERY_S = 1.0
STALE_S = 5.0  # a last check older than this is not trusted (the check itself is stuck)

Check = tuple[bool, str]  # (ok, detail)


@dataclass(frozen=True)
class Report:
    checks: dict[str, Check]
    at: float  # time.monotonic() when the check finished

    def age_s(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.at


@dataclass
class ReadinessMonitor:
    """Runs `checks` (name → function giving (ok, detail)) every `every_s` on a thread of
    its own; `report()` is the last result, marked failed when older than `stale_s`."""

    checks: dict[str, Callable[[], Check]]
    every_s: float = CHECK_EVERY_S
    stale_s: float = STALE_S
    before_first: str = "not checked yet"  # the detail of every check until the first ends
    _last: Report | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def check_now(self) -> Report:
        results = {name: _guarded(fn) for name, fn in self.checks.items()}
        self._last = Report(results, time.monotonic())
        return self._last

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="api-readiness", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.stale_s)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.check_now()

    def report(self) -> Report:
        """The last check's results; every check failed when there is none yet or it is
        older than `stale_s`."""
        last = self._last
        if last is None:
            return Report({name: (False, self.before_first) for name in self.checks},
                          time.monotonic())
        age = last.age_s()
        if age > self.stale_s:
            stale = f"no check has finished for {age:.0f} s (the last one is stuck)"
            return Report({name: (False, stale) for name in self.checks}, last.at)
        return last


def _guarded(fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except Exception as exc:  # a check that raises is a failed check, named
        return False, f"{type(exc).__name__}: {exc}"
