"""Load for inferscale: the traffic the HPA is meant to absorb.

    locust -f locustfile.py --host http://127.0.0.1:8080                 # web UI on :8089, you pick users
    LOAD_SHAPE=step locust -f locustfile.py --host URL --headless         # a scripted ramp, no UI
    locust -f locustfile.py --host URL --headless -u 4 -r 1 -t 10m        # fixed users, no shape

Every setting is an environment variable (LOAD_*), so the same file serves the
web UI, CI and the autoscaling demo.

Pacing: open arrivals, not a closed loop
----------------------------------------
Locust's usual user waits for its answer before it sends again (closed loop).
When the server slows down such a user slows down with it: the arrival rate
falls exactly as the queue grows, and the latency the HPA must react to
partly hides itself. Here each user is instead a source of arrivals at
LOAD_USER_RPS requests/s (Poisson by default, or evenly spaced) and every
request runs in its own greenlet, so the next one leaves on schedule however
slowly the last is answered; each arrival sends LOAD_BURST requests (1 by
default) at once. N users offer N x LOAD_USER_RPS x LOAD_BURST requests/s.
Limits: a user keeps at most LOAD_MAX_OUTSTANDING requests in flight; an
arrival beyond that is not sent and is counted as a failure named
"arrival dropped ..." so the lost load is visible, never silent. A stopped
user (the shape or the UI lowering the count, or the end of the run)
abandons its in-flight requests; they are absent from the stats. Locust
itself must keep up: watch its CPU warning. LOAD_PACING=closed gives the
classic closed loop (constant_throughput pacing) for comparison.

Rejections
----------
A full pod answers 503 with Retry-After. That is a failure by default: for
the autoscaling demo a rejected request is exactly what the HPA should have
prevented. It is never retried (an open source of arrivals does not back
off). LOAD_REJECTED=ok counts it as a success under "<route> (rejected)"
instead, so the route's own response times stay those of served requests.
The server's other 503s (shutting down, no model loaded, an admitted request
lost with its model process) are failures either way: no autoscaler
prevents them.
"""

from __future__ import annotations

import math
import os
import random
import re
import time
import uuid

from gevent.pool import Pool
from locust import FastHttpUser, LoadTestShape, task
from locust.exception import CatchResponseError


def _env(name: str, default: str, choices: tuple[str, ...] | None = None) -> str:
    value = os.environ.get(name, "").strip() or default
    if choices and value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


def _env_number(name: str, default: float, minimum: float = 0.0, kind=float, maximum: float = math.inf):
    raw = _env(name, str(default))
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if not (math.isfinite(value) and minimum <= value <= maximum):
        bound = f" and <= {maximum}" if math.isfinite(maximum) else ""
        raise ValueError(f"{name}={raw!r} must be a finite number >= {minimum}{bound}")
    return value


def _env_matching(name: str, default: str, pattern: str, meaning: str) -> str:
    value = _env(name, default)
    if not re.fullmatch(pattern, value):
        raise ValueError(f"{name}={value!r} is not {meaning}")
    return value


# What a user sends.
USER_RPS = _env_number("LOAD_USER_RPS", 0.2, minimum=0.001)
# 0.2/s default: one user offers about what one pod serves at the server's
# defaults (2 model slots per pod / 10 s inference), so "users" reads as "pods needed".
PACING = _env("LOAD_PACING", "open", ("open", "closed"))
ARRIVALS = _env("LOAD_ARRIVALS", "poisson", ("poisson", "fixed"))
BURST = _env_number("LOAD_BURST", 1, minimum=1, kind=int)  # requests sent together per arrival
MAX_OUTSTANDING = _env_number("LOAD_MAX_OUTSTANDING", 32, minimum=1, kind=int)
# A queued request waits whole inferences (MAX_QUEUE x 10 s by default): give it minutes.
TIMEOUT_SECONDS = _env_number("LOAD_TIMEOUT_SECONDS", 300.0, minimum=0.1)
REJECTED = _env("LOAD_REJECTED", "failure", ("failure", "ok"))
# New connection per request by default: a Service balances connections, not
# requests, so reused keep-alive connections would stay pinned to the old pods
# and the pods the HPA adds would get no traffic.
KEEPALIVE = _env("LOAD_KEEPALIVE", "false", ("true", "false")) == "true"
# The most features any server takes (its MAX_FEATURES at the highest): more
# would only build requests every server refuses.
FEATURES = _env_number("LOAD_FEATURES", 8, minimum=1, kind=int, maximum=65536)
# The server's MODEL_NAME pattern: anything else is a 404 on every V2 request.
MODEL_NAME = _env_matching(
    "LOAD_MODEL_NAME",
    "inferscale",
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
    "a model name a server can serve (a letter or digit, then letters, digits, '_', '.' or '-'; 63 at most)",
)
PREDICT_WEIGHT = _env_number("LOAD_PREDICT_WEIGHT", 1, kind=int)
V2_WEIGHT = _env_number("LOAD_V2_WEIGHT", 1, kind=int)
if PREDICT_WEIGHT + V2_WEIGHT == 0:
    raise ValueError("LOAD_PREDICT_WEIGHT and LOAD_V2_WEIGHT are both 0: no user would send anything")

# Load shape (only with LOAD_SHAPE; without it -u/-r or the web UI set the users).
SHAPE = _env("LOAD_SHAPE", "none", ("none", "steady", "step", "spike"))
USERS = _env_number("LOAD_USERS", 4, minimum=0, kind=int)
SPAWN_RATE = _env_number("LOAD_SPAWN_RATE", 1.0, minimum=0.01)
# 10 min: the HPA needs ~1.5 min to see a change and 7 min (the chart's
# scale-down stabilization, 420 s) before it removes pods; a demo should show both.
DURATION_SECONDS = _env_number("LOAD_DURATION_SECONDS", 600.0)  # 0 = until stopped
STEP_USERS = _env_number("LOAD_STEP_USERS", 1, minimum=1, kind=int)
# 2 min per step: longer than the HPA's reaction time, so each step's scale-up is visible.
STEP_SECONDS = _env_number("LOAD_STEP_SECONDS", 120.0, minimum=0.1)
BASE_USERS = _env_number("LOAD_BASE_USERS", 1, kind=int)
SPIKE_AT_SECONDS = _env_number("LOAD_SPIKE_AT_SECONDS", 60.0)
SPIKE_SECONDS = _env_number("LOAD_SPIKE_SECONDS", 120.0)


class InferenceUser(FastHttpUser):
    """One source of arrivals for one route; subclasses say what to send."""

    abstract = True
    route = ""
    # FastHttpSession's connection pool: one connection per in-flight request.
    concurrency = MAX_OUTSTANDING
    network_timeout = TIMEOUT_SECONDS
    connection_timeout = 10.0

    def on_start(self) -> None:
        self._in_flight = Pool(MAX_OUTSTANDING)
        interval = 1.0 / USER_RPS
        # Evenly spaced users spawned 1/spawn-rate apart would fire in lockstep;
        # a random phase spreads them as independent clients would be.
        phase = random.uniform(0, interval) if ARRIVALS == "fixed" else random.expovariate(USER_RPS)
        self._next_arrival = time.monotonic() + phase
        self._last_wait_start = time.monotonic()

    def on_stop(self) -> None:
        self._in_flight.kill(block=False)

    def wait_time(self) -> float:
        # Sleeping here, not inside the task, lets locust stop the user at once.
        now = time.monotonic()
        if PACING == "closed":
            # constant_throughput: one request per 1/rate s at most, later if the answer is late.
            wait = max(0.0, 1.0 / USER_RPS - (now - self._last_wait_start))
            self._last_wait_start = now + wait
            return wait
        return max(0.0, self._next_arrival - now)

    @task
    def arrive(self) -> None:
        if PACING == "closed":
            self.send()
            return
        if time.monotonic() < self._next_arrival:
            return  # the first arrival's phase; wait_time sleeps until it
        for _ in range(BURST):
            if self._in_flight.full():
                self._report_dropped()
            else:
                self._in_flight.spawn(self.send)
        gap = random.expovariate(USER_RPS) if ARRIVALS == "poisson" else 1.0 / USER_RPS
        # From the schedule, not from now: a late wake-up does not shift later arrivals.
        self._next_arrival += gap

    def body(self) -> dict:
        raise NotImplementedError

    def answered(self, payload: dict) -> bool:
        raise NotImplementedError

    def send(self) -> None:
        headers = {} if KEEPALIVE else {"Connection": "close"}
        with self.client.post(
            self.route, json=self.body(), headers=headers, name=self.route, catch_response=True
        ) as response:
            if response.status_code == 503 and _queue_full(response):
                retry_after = response.headers.get("Retry-After")
                if REJECTED == "ok":
                    response.request_meta["name"] = f"{self.route} (rejected)"
                    response.success()
                else:
                    response.failure(f"rejected: queue full (503, Retry-After {retry_after})")
            elif response.status_code == 200:
                try:
                    ok = self.answered(response.json())
                except ValueError:
                    ok = False
                if not ok:
                    response.failure("200 without an inference result in the body")
            # Any other status: locust's default (>= 400 is a failure) applies.

    def _report_dropped(self) -> None:
        self.environment.events.request.fire(
            request_type="ARRIVAL",
            name=f"arrival dropped: {MAX_OUTSTANDING} requests in flight (LOAD_MAX_OUTSTANDING)",
            response_time=0,
            response_length=0,
            exception=CatchResponseError("the open-loop schedule could not send this request"),
            context={},
        )


def _queue_full(response) -> bool:
    """A 503 for a pod whose slots and queue are all taken, not one of the server's other 503s."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return False
    if isinstance(error, dict):  # /predict's errors carry a code
        return error.get("code") == "overloaded"
    # V2's error is a message alone (the protocol's shape): the server's words for a full pod.
    return isinstance(error, str) and error.endswith("model slots and queue places are taken")


def _features() -> list[float]:
    return [round(random.uniform(-1, 1), 4) for _ in range(FEATURES)]


class PredictUser(InferenceUser):
    """POST /predict, the simple JSON route."""

    weight = PREDICT_WEIGHT
    abstract = PREDICT_WEIGHT == 0
    route = "/predict"

    def body(self) -> dict:
        return {"features": _features()}

    def answered(self, payload: dict) -> bool:
        return isinstance(payload.get("prediction"), float)


class V2InferUser(InferenceUser):
    """POST /v2/models/<model>/infer, the KServe V2 (Open Inference Protocol) route."""

    weight = V2_WEIGHT
    abstract = V2_WEIGHT == 0
    route = f"/v2/models/{MODEL_NAME}/infer"

    def body(self) -> dict:
        return {
            "id": str(uuid.uuid4()),
            "inputs": [{"name": "features", "shape": [1, FEATURES], "datatype": "FP32", "data": _features()}],
        }

    def answered(self, payload: dict) -> bool:
        outputs = payload.get("outputs") or [{}]
        return len(outputs[0].get("data") or []) == 1


class EnvLoadShape(LoadTestShape):
    """The shape named by LOAD_SHAPE:

    steady  LOAD_USERS users, reached at LOAD_SPAWN_RATE users/s.
    step    LOAD_STEP_USERS more users every LOAD_STEP_SECONDS, up to LOAD_USERS: each
            step should bring one more scale-up.
    spike   LOAD_BASE_USERS, then LOAD_USERS for LOAD_SPIKE_SECONDS starting at
            LOAD_SPIKE_AT_SECONDS (all at once), then LOAD_BASE_USERS again: scale up, then down.
    Every shape ends after LOAD_DURATION_SECONDS (0 = when you stop it).
    """

    # Without LOAD_SHAPE locust must not see a shape at all, or the web UI
    # would hide its user count and spawn rate fields.
    abstract = SHAPE == "none"

    def tick(self):
        elapsed = self.get_run_time()
        if DURATION_SECONDS and elapsed >= DURATION_SECONDS:
            return None
        if SHAPE == "step":
            return min(USERS, STEP_USERS * (1 + int(elapsed // STEP_SECONDS))), SPAWN_RATE
        if SHAPE == "spike":
            if SPIKE_AT_SECONDS <= elapsed < SPIKE_AT_SECONDS + SPIKE_SECONDS:
                # A spike is sudden: start every user within a second.
                return USERS, max(SPAWN_RATE, float(USERS))
            return BASE_USERS, max(SPAWN_RATE, float(USERS))
        return USERS, SPAWN_RATE
