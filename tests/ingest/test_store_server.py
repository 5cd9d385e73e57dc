"""The Qdrant server store's client, built against a real loopback port where nobody
listens (a server that is down): no qdrant-client warning escapes, and the first call is
one StoreError line naming the server."""

from __future__ import annotations

import threading
import warnings

import pytest
from support.ports import free_port

from core.errors import StoreError
from ingest.store.server import ServerStore


def test_connecting_to_a_server_that_is_down_warns_nothing() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    before = set(threading.enumerate())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = ServerStore.connect(url, None, "chunks", timeout_s=2)
        with pytest.raises(StoreError) as err:
            store.exists()
        for t in set(threading.enumerate()) - before:  # what the client started, finished
            t.join(30)
    assert [str(w.message) for w in caught] == []
    assert url in str(err.value) and "\n" not in str(err.value)
