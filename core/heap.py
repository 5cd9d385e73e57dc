"""The C heap of this process (glibc's malloc), so that memory freed after a job goes back.

glibc gives each thread that allocates its own arena, up to eight per core. The parse
thread of each ingest, the tokenizer's and Qdrant Edge's threads each fill one, and what a
job frees stays there in pages still partly used, out of `malloc_trim`'s reach: two 2 MB
ingests in a row on one open store kept 50 MB more after the second with the default
arenas, 7 MB with two (bench/README.md, "where a text file's memory goes").
"""

from __future__ import annotations

import contextlib
import ctypes
import os

# One arena per core, two at least: no more threads allocate at once than there are cores,
# and on the 2 cores measured that is the two arenas that kept 7 MB.
ARENAS = max(2, os.cpu_count() or 1)
_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most `arenas` malloc arenas from now on; call it before any thread starts (glibc
    fixes the limit when the second thread first allocates). False where it cannot."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def release() -> None:
    """Hands freed heap back to the system (glibc keeps it otherwise): a long-lived API
    process would stay at the peak of its largest upload."""
    libc = _libc()
    with contextlib.suppress(AttributeError):
        if libc is not None:
            libc.malloc_trim(0)
