"""A dead man's switch for the local stack: Alertmanager's webhook notifications
of the always-firing Watchdog, received on the host and timed.

A real switch (an outside service) pages when the heartbeats stop; a test asks
how long ago the last one came, and whether they come again.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HeartbeatReceiver:
    """Listens on `host`:`port` (the host's side of the node's link, which pods
    reach). Alertmanager is configured with the URL before the node's link,
    and so the address, exists: the port is chosen first, bound once it does."""

    def __init__(self, host: str, port: int):
        self._firing: list[float] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())

    def __enter__(self) -> HeartbeatReceiver:
        threading.Thread(target=self._server.serve_forever, name="heartbeats", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def heartbeats_since(self, since: float) -> int:
        """Notifications of Watchdog firing received at or after `since` (time.monotonic())."""
        with self._lock:
            return sum(1 for at in self._firing if at >= since)

    def silent_for(self) -> float:
        """Seconds since the last Watchdog-firing notification (infinite before the first)."""
        with self._lock:
            return time.monotonic() - self._firing[-1] if self._firing else float("inf")

    def _record(self, notification: dict) -> None:
        watchdog_firing = notification.get("status") == "firing" and any(
            alert["labels"].get("alertname") == "Watchdog" and alert["status"] == "firing"
            for alert in notification.get("alerts", [])
        )
        if watchdog_firing:
            with self._lock:
                self._firing.append(time.monotonic())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver._record(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass  # one line per heartbeat would bury the test's own output

        return Handler
