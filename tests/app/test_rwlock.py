"""The readers-writer lock: readers together, a writer alone, writers first, reentrant."""

from __future__ import annotations

import threading

import pytest

from app.rwlock import ReadWriteLock


def _in_thread(lock: ReadWriteLock, how: str, done: threading.Event) -> threading.Thread:
    def run() -> None:
        with lock.read() if how == "read" else lock.write():
            done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _wait_for(check: object, what: str) -> None:
    for _ in range(2000):
        if check():  # type: ignore[operator]
            return
        threading.Event().wait(0.001)
    raise AssertionError(what)


def test_readers_share_and_a_writer_waits_for_them() -> None:
    lock = ReadWriteLock()
    with lock.read():
        other = threading.Event()
        _in_thread(lock, "read", other).join(5)
        assert other.is_set()  # a second reader entered while the first reads
        wrote = threading.Event()
        writer = _in_thread(lock, "write", wrote)
        _wait_for(lambda: lock.writers_waiting() == 1, "the writer never waited")
        assert not wrote.is_set()
    writer.join(5)
    assert wrote.is_set() and lock.readers() == 0


def test_a_waiting_writer_goes_before_new_readers_and_nested_reads_do_not_wait() -> None:
    lock = ReadWriteLock()
    with lock.read():
        wrote, read = threading.Event(), threading.Event()
        writer = _in_thread(lock, "write", wrote)
        _wait_for(lambda: lock.writers_waiting() == 1, "the writer never waited")
        reader = _in_thread(lock, "read", read)
        with lock.read():  # this thread already reads: it re-enters at once
            pass
        assert not read.wait(0.05)  # a new reader queues behind the writer
    writer.join(5)
    reader.join(5)
    assert wrote.is_set() and read.is_set()


def test_a_writer_reenters_and_reads_but_a_reader_cannot_upgrade() -> None:
    lock = ReadWriteLock()
    with lock.write(), lock.write(), lock.read():
        read = threading.Event()
        reader = _in_thread(lock, "read", read)
        assert not read.wait(0.05)
    reader.join(5)
    assert read.is_set()
    with lock.read(), pytest.raises(RuntimeError, match="cannot become a writer"):
        lock.acquire_write()
    with pytest.raises(RuntimeError, match="does not hold it"):
        lock.release_write()
