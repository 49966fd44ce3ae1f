"""A locust plugin that writes when each request was sent, for the simulator to replay.

Loaded beside the project's locustfile (`locust -f locustfile.py,bench/arrival_log.py`),
it appends the wall-clock start of every request that reached the wire, answered or
not, and its HTTP status (0: no answer), to the file named by ARRIVAL_LOG, one
request per line: `1764979200.123456 503`. Arrivals the locustfile drops
(too many in flight) never left the client, so they are not written. Requests still
in flight when the run ends are abandoned by locust without an event: the last
inference time's worth of arrivals can be missing.
"""

from __future__ import annotations

import os

from locust import events

_log = open(os.environ["ARRIVAL_LOG"], "a", buffering=1)  # noqa: SIM115 - open for the process's life


@events.request.add_listener
def _record(start_time: float | None = None, response: object = None, **_) -> None:
    # locust stamps every request it sends; the locustfile's reports of the
    # arrivals it dropped (request_type ARRIVAL) carry no start: never sent.
    if start_time is not None:
        _log.write(f"{start_time:.6f} {getattr(response, 'status_code', None) or 0}\n")


@events.quitting.add_listener
def _close(**_) -> None:
    _log.close()
