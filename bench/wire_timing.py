"""How long a server itself takes over each request on one loopback port, read from the wire.

A client's own timing of a request includes the client's waits. On a machine
whose cores the load keeps busy, Prometheus sometimes reads a response tens
of milliseconds after its last byte was sent, and times the scrape that long.
The kernel stamps each packet as it is sent, before tcpdump ever sees it, so
the time from a request's last packet to its response's last packet is the
server's time alone: its wait for the CPU, reading, answering and writing.
That holds for answers that fit in the client's receive window, as a scrape of
a few kB does: a larger one waits on the wire for the client to read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

# Enough for the Ethernet, IP and TCP headers; a payload's length comes from them.
SNAPLEN = 128
# How long tcpdump may take to write out what it holds and exit once told to stop.
STOP_TIMEOUT = 10.0


@dataclass
class Exchange:
    """One request and its response on one connection, by their packets' times."""

    request_end: float
    response_end: float | None = None


@dataclass
class WireTimer:
    """tcpdump on the loopback interface for `port`, while in a `with` block."""

    pcap: Path
    port: int
    _tcpdump: subprocess.Popen | None = field(default=None, init=False)

    @staticmethod
    def unavailable() -> str | None:
        """Why a capture cannot run here, or None when it can."""
        if shutil.which("tcpdump") is None:
            return "tcpdump is not installed (bash ci/tools.sh tcpdump)"
        if os.geteuid() != 0:
            return "capturing packets needs root"
        return None

    def __enter__(self) -> WireTimer:
        with self.pcap.open("wb") as out:
            # -U: each packet is written as it comes, so stopping loses none.
            # Written through our descriptor: tcpdump drops to its own user,
            # which may not write where we do.
            self._tcpdump = subprocess.Popen(
                ["tcpdump", "-i", "lo", "-n", "-U", "-s", str(SNAPLEN), "-w", "-", f"tcp port {self.port}"],
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
            )
        first = self._tcpdump.stderr.readline()  # "tcpdump: listening on lo, ..." once the capture is open
        if "listening on" not in first:
            self._stop()
            raise RuntimeError(f"tcpdump did not start capturing: {first.strip()}")
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def _stop(self) -> None:
        self._tcpdump.terminate()
        try:
            self._tcpdump.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._tcpdump.kill()
            self._tcpdump.wait()
        self._tcpdump.stderr.close()

    def server_ms(self, since: float) -> list[float]:
        """Per answered request sent at or after `since` (Unix time): ms from its last packet to its answer's last."""
        return [
            (exchange.response_end - exchange.request_end) * 1000
            for exchange in exchanges(self.pcap, self.port)
            if exchange.response_end is not None and exchange.request_end >= since
        ]


def exchanges(pcap: Path, port: int) -> list[Exchange]:
    """Every request to `port` in the capture, paired with its response by connection.

    A request is a run of client packets carrying data, its response the run
    of server packets that follows (HTTP/1.1 answers in order, one at a time).
    """
    by_connection: dict[int, list[Exchange]] = {}
    with pcap.open("rb") as capture:
        for stamp, frame in dpkt.pcap.Reader(capture):
            ip = dpkt.ethernet.Ethernet(frame).data
            tcp = ip.data
            if ip.len - ip.hl * 4 - tcp.off * 4 == 0:
                continue  # a bare ACK, SYN or FIN
            if tcp.dport == port:
                exchanges_here = by_connection.setdefault(tcp.sport, [])
                if exchanges_here and exchanges_here[-1].response_end is None:
                    exchanges_here[-1].request_end = stamp  # the same request, continued
                else:
                    exchanges_here.append(Exchange(stamp))
            elif by_connection.get(tcp.dport):
                by_connection[tcp.dport][-1].response_end = stamp
    return sorted((e for es in by_connection.values() for e in es), key=lambda e: e.request_end)
