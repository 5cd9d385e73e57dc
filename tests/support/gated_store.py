"""A real store with its calls recorded and, on demand, held: each call's entry and exit are
written down with a timestamp (ordering, not timing), and a call named in `hold` waits in
the store until the test releases it, so a test can keep a retrieval inside the store for as
long as it needs to show what else runs meanwhile."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Call:
    name: str
    thread: int
    entered: int  # time.monotonic_ns() at entry and exit
    exited: int | None = None


@dataclass
class GatedStore:
    inner: Any
    calls: list[Call] = field(default_factory=list)
    hold: set[str] = field(default_factory=set)  # call names that wait for `release`
    release: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)  # a call is waiting now
    barrier: threading.Barrier | None = None  # each thread's first query waits for the others
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _met: set[int] = field(default_factory=set)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name.startswith("_") or name == "close":
            return attr

        def recorded(*args: Any, **kwargs: Any) -> Any:
            call = Call(name, threading.get_ident(), time.monotonic_ns())
            with self._guard:
                self.calls.append(call)
            try:
                self._wait(name)
                result = attr(*args, **kwargs)
                return list(result) if name == "scroll" else result
            finally:
                call.exited = time.monotonic_ns()

        return recorded

    def _wait(self, name: str) -> None:
        if name in self.hold:
            self.held.set()
            if not self.release.wait(300):
                raise TimeoutError(f"{name} was held for 300 s: the test did not release it")
        me = threading.get_ident()
        if name == "query" and self.barrier is not None and me not in self._met:
            self._met.add(me)
            self.barrier.wait(30)  # BrokenBarrierError: the other reader never got in

    def named(self, name: str) -> list[Call]:
        with self._guard:
            return [c for c in self.calls if c.name == name]
