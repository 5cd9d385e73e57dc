"""The C heap's arena limit and trim, on this process's own glibc."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from core import heap


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc(), reason="needs glibc")
def test_arenas_are_limited_before_any_thread_and_freed_heap_released() -> None:
    """In a fresh process (no thread has allocated yet) glibc takes the limit; the trim runs."""
    code = ("from core import heap; import threading\n"
            "ok = heap.limit_arenas()\n"
            "t = threading.Thread(target=lambda: bytearray(1 << 20)); t.start(); t.join()\n"
            "heap.release(); print(ok)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "True", done.stderr


def test_without_glibc_the_limit_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_libc", lambda: None)
    assert heap.limit_arenas() is False
    heap.release()  # does nothing, raises nothing
