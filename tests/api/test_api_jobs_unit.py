"""The store wrapper ingest jobs write through: each store call under the service's
readers-writer lock (reads beside other readers, writes alone), and a document's commit (set
live, then delete the old version) as one step."""

from __future__ import annotations

import threading
from typing import Any

from app.runtime import LockedStore
from app.rwlock import ReadWriteLock
from ingest.store import LIVE, Where


def can_read_elsewhere(lock: ReadWriteLock, wait_s: float = 0.1) -> bool:
    """Whether another thread gets the read lock within `wait_s` (a blocked one reads later,
    when the lock is released, and ends)."""
    entered = threading.Event()

    def read() -> None:
        with lock.read():
            entered.set()

    threading.Thread(target=read, daemon=True).start()
    return entered.wait(wait_s)


class _Recorder:
    """Records calls and whether another thread could read during each."""

    kind = "edge"
    generation = 7

    def __init__(self, lock: ReadWriteLock):
        self.lock = lock
        self.calls: list[tuple[str, bool]] = []

    def set_payload(self, where: Any, payload: dict[str, Any]) -> None:
        self.calls.append(("set_payload", can_read_elsewhere(self.lock)))

    def delete(self, where: Any) -> None:
        self.calls.append(("delete", can_read_elsewhere(self.lock)))

    def count(self, where: Any) -> int:
        self.calls.append(("count", can_read_elsewhere(self.lock)))
        return 3

    def scroll(self, where: Any) -> Any:
        yield from range(3)


def test_writes_hold_the_lock_alone_and_a_commit_holds_it_throughout() -> None:
    lock = ReadWriteLock()
    inner = _Recorder(lock)
    store = LockedStore(inner, lock)
    assert store.kind == "edge" and store.generation == 7
    assert store.scroll(Where()) == [0, 1, 2]  # read whole inside the lock
    assert store.count(Where()) == 3

    store.set_payload(Where(), {"state": LIVE})
    assert not can_read_elsewhere(lock)  # held between the commit's two calls
    store.delete(Where())
    assert can_read_elsewhere(lock)  # released after the old version is gone
    store.set_payload(Where(), {"state": "staged"})
    assert can_read_elsewhere(lock)  # any other payload update releases at once
    assert inner.calls == [("count", True), ("set_payload", False), ("delete", False),
                           ("set_payload", False)]


def test_a_job_that_fails_mid_commit_releases_the_lock() -> None:
    lock = ReadWriteLock()
    store = LockedStore(_Recorder(lock), lock)
    store.set_payload(Where(), {"state": LIVE})
    assert not can_read_elsewhere(lock)
    store.release_held()
    assert can_read_elsewhere(lock, wait_s=2)
