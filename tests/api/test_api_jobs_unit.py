"""The store wrapper ingest jobs write through: one store call at a time under the service's
lock, and a document's commit (set live, then delete the old version) as one step."""

from __future__ import annotations

import threading
from typing import Any

from app.runtime import LockedStore
from ingest.store import LIVE, Where


class _Recorder:
    """Records calls and whether another thread could take the lock during each."""

    kind = "edge"
    generation = 7

    def __init__(self, lock: threading.RLock):
        self.lock = lock
        self.calls: list[tuple[str, bool]] = []

    def _free_elsewhere(self) -> bool:
        got: list[bool] = []

        def try_lock() -> None:
            got.append(self.lock.acquire(timeout=0.05))
            if got[0]:
                self.lock.release()

        t = threading.Thread(target=try_lock)
        t.start()
        t.join()
        return got[0]

    def set_payload(self, where: Any, payload: dict[str, Any]) -> None:
        self.calls.append(("set_payload", self._free_elsewhere()))

    def delete(self, where: Any) -> None:
        self.calls.append(("delete", self._free_elsewhere()))

    def scroll(self, where: Any) -> Any:
        yield from range(3)


def test_each_call_holds_the_lock_and_a_commit_holds_it_throughout() -> None:
    lock = threading.RLock()
    inner = _Recorder(lock)
    store = LockedStore(inner, lock)
    assert store.kind == "edge" and store.generation == 7
    assert store.scroll(Where()) == [0, 1, 2]  # read whole inside the lock

    store.set_payload(Where(), {"state": LIVE})
    assert not inner._free_elsewhere()  # held between the commit's two calls
    store.delete(Where())
    assert inner._free_elsewhere()  # released after the old version is gone
    store.set_payload(Where(), {"state": "staged"})
    assert inner._free_elsewhere()  # any other payload update releases at once
    assert inner.calls == [("set_payload", False), ("delete", False), ("set_payload", False)]


def test_a_job_that_fails_mid_commit_releases_the_lock() -> None:
    lock = threading.RLock()
    store = LockedStore(_Recorder(lock), lock)
    store.set_payload(Where(), {"state": LIVE})
    store.release_held()
    got = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.5)))
    t.start()
    t.join()
    assert got == [True]
