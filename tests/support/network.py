"""The suite's network guard: a socket of the test process connects to loopback only."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any


class NetworkRefused(OSError):
    """A test tried to reach an address off this machine."""


def _loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths and other local families
    host = str(address[0]).split("%")[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: resolving it could already leave the machine


def loopback_only(real: Callable[..., Any]) -> Callable[..., Any]:
    """`real` (socket.connect or connect_ex) refusing any IP address off this machine."""
    def call(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
            raise NetworkRefused(f"tests reach loopback only, not {address!r}")
        return real(sock, address)
    return call
