"""Clients that start a request and never finish it: the slow and the stalled."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

from .loopback import LOOPBACK

# Headers cut off mid-name; and complete headers announcing a body that stops short.
STALLED_HEADERS = b"POST /predict HTTP/1.1\r\nHost: inferscale\r\nContent-Le"
STALLED_BODY = (
    b"POST /predict HTTP/1.1\r\nHost: inferscale\r\nContent-Type: application/json\r\n"
    b"Content-Length: 200\r\n\r\n" + b'{"features": [1, 2'
)


def open_stalled(port: int, prefix: bytes) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=30)
    sock.sendall(prefix)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


def trickle(port: int, stop: threading.Event) -> bytes:
    """A slowloris: one byte every 0.2 s, each read well within any per-read timeout."""
    sock = socket.create_connection((LOOPBACK, port), timeout=30)
    for byte in STALLED_BODY * 10:
        # Stop sending once the server has answered: bytes sent after its close
        # would make it reset the connection, and the answer could be lost.
        if stop.is_set() or select.select([sock], [], [], 0)[0]:
            break
        sock.send(bytes([byte]))
        time.sleep(0.2)
    return read_all(sock)
