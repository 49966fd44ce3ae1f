"""Carry TCP connections to the API server on the host's loopback, 127.0.0.1:PORT.

The API server listens on the host's loopback only. The kubelet and
kube-proxy live in the node's namespace, which has a loopback of its own:
`python netns_relay.py PORT --netns NETNS_PATH` listens on 127.0.0.1:PORT
there, so they dial the same URL (and certificate name) as every other
client. Pods reach the API server through the `kubernetes` Service, whose
endpoint is the address the API server advertises, the host's end of the
node's link: `python netns_relay.py PORT --address ADDRESS` listens there.
Nothing on the host listens on an address another machine can reach.

Run from the host's namespace: only the listening socket is opened inside
the node's namespace (setns moves one thread, which then returns), so every
connect is the host's.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import socket
import threading

CLONE_NEWNET = 0x40000000
CHUNK = 65536


def _setns(fd: int) -> None:
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def listen_inside(netns: str, port: int) -> socket.socket:
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    node = os.open(netns, os.O_RDONLY)
    try:
        _setns(node)
        try:
            return socket.create_server(("127.0.0.1", port), backlog=128)
        finally:
            _setns(home)
    finally:
        os.close(home)
        os.close(node)


def pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:  # a reset on either side: unblock the other direction too
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def relay(client: socket.socket, port: int) -> None:
    with client:
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            return
        with upstream:
            upstream.settimeout(None)
            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--netns", help="listen on 127.0.0.1 inside this network namespace")
    where.add_argument("--address", help="listen on this address of the host")
    args = parser.parse_args()
    if args.netns:
        listener = listen_inside(args.netns, args.port)
    else:
        listener = socket.create_server((args.address, args.port), backlog=128)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=relay, args=(client, args.port), daemon=True).start()


if __name__ == "__main__":
    main()
