"""The loopback address every process of the harness binds, and free ports on it."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (the usual bind-to-0 race is accepted)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
