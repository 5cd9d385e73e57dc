"""A readers-writer lock: many readers at once, one writer alone, writers first.

Reentrant per thread: a thread that holds it (to read or to write) may take it again for
either, so a writer's nested calls and a reader's nested reads never wait on themselves. A
writer that waits stops new readers from entering (threads already reading may go on and
re-enter), so a stream of questions cannot starve an ingest job. `with lock:` is a write,
for callers that want the store to themselves (as the evaluation job's probe writes do).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers: dict[int, int] = {}  # thread id -> nested read holds
        self._writer: int | None = None
        self._writes = 0  # the writer's nested holds
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write(self) -> Iterator[None]:
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()

    def __enter__(self) -> ReadWriteLock:
        self.acquire_write()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release_write()

    def acquire_read(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._writer != me and me not in self._readers:
                self._cond.wait_for(lambda: self._writer is None and not self._waiting_writers)
            self._readers[me] = self._readers.get(me, 0) + 1

    def release_read(self) -> None:
        me = threading.get_ident()
        with self._cond:
            left = self._readers[me] - 1
            if left:
                self._readers[me] = left
            else:
                del self._readers[me]
                self._cond.notify_all()

    def acquire_write(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._writes += 1
                return
            if me in self._readers:
                raise RuntimeError("a reader cannot become a writer (it would wait on itself)")
            self._waiting_writers += 1
            try:
                self._cond.wait_for(lambda: self._writer is None and not self._readers)
            finally:
                self._waiting_writers -= 1
            self._writer, self._writes = me, 1

    def release_write(self) -> None:
        with self._cond:
            if self._writer != threading.get_ident():
                raise RuntimeError("the write lock is released by a thread that does not hold it")
            self._writes -= 1
            if not self._writes:
                self._writer = None
                self._cond.notify_all()

    def readers(self) -> int:
        """Threads reading now (for tests and metrics)."""
        with self._cond:
            return len(self._readers)

    def writers_waiting(self) -> int:
        """Threads waiting to write (for tests and metrics)."""
        with self._cond:
            return self._waiting_writers
