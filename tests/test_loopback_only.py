"""The suite's network guard (conftest.py, support/network.py): sockets reach loopback, nothing else."""

from __future__ import annotations

import socket

import httpx
import pytest
from support.network import NetworkRefused


def test_a_connection_off_the_machine_is_refused() -> None:
    with socket.socket() as sock, pytest.raises(NetworkRefused, match="192.0.2.1"):
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1: would hang or leave the machine
    with socket.socket(socket.AF_INET6) as sock, pytest.raises(NetworkRefused):
        sock.connect_ex(("2001:db8::1", 443, 0, 0))
    with pytest.raises(httpx.ConnectError, match="loopback only"):
        httpx.get("http://192.0.2.1/", timeout=1)
    with socket.socket() as sock, pytest.raises(NetworkRefused):
        sock.connect(("example.com", 80))


def test_loopback_connects() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        for host in ("127.0.0.1", "localhost"):
            with socket.create_connection((host, server.getsockname()[1]), timeout=5):
                pass
            server.accept()[0].close()
