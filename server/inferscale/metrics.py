"""The metric contract: the names the adapter rules, the chart and the tests rely on.

The pod's metrics come from two kinds of process. The model process owns the
model's view (slots, queue, compute time, readiness); the HTTP workers own the
caller's view (what each request waited and how it ended) and the connections.
Each metric is written by one kind only, so its multiprocess aggregation
(sum, live sum, most recent) has one meaning.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Inference takes seconds and a queued request waits for whole inferences, so
# the buckets are dense from 1 s to 20 s (around the 10 s default) and reach
# 5 minutes for a long queue; sub-second buckets show fast rejections of work
# that never queued and runs of a shortened test model.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2,
    3,
    4,
    5,
    6,
    7.5,
    9,
    10,
    11,
    12.5,
    15,
    20,
    25,
    30,
    45,
    60,
    90,
    120,
    180,
    300,
)

SUCCESS = "success"
ERROR = "error"
REJECTED = "rejected"
STATUSES = (SUCCESS, ERROR, REJECTED)

MODEL_READY = "inference_model_ready"
MODEL_READY_HELP = "1 once the pod's model process has loaded its model, else 0."


class ModelMetrics:
    """The model process's metrics; also the executor's observer."""

    def __init__(self, registry: CollectorRegistry):
        self.inference_duration = duration_histogram(
            "inference_duration_seconds", "Model compute time of one inference request.", registry
        )
        self.queue_wait = duration_histogram(
            "inference_queue_wait_seconds", "Time an admitted request waited for a free model slot.", registry
        )
        # Live sums (live_gauge): a crashed model process cannot leave a
        # request "in flight" forever.
        self.in_flight = live_gauge(
            "inference_in_flight_requests", "Inference requests running on the model now.", registry
        )
        self.queue_depth = live_gauge(
            "inference_queue_depth", "Admitted inference requests waiting for a model slot now.", registry
        )
        # With the two gauges above, the adapter's slot-utilization rule:
        # (running + queued) / slots, which reads the same share whatever
        # MODEL_CONCURRENCY a release sets.
        self.slots = live_gauge(
            "inference_model_slots", "Inference requests the model runs at once (MODEL_CONCURRENCY).", registry
        )
        self.model_ready = model_ready_gauge(registry)

    def admitted(self) -> None:
        self.queue_depth.inc()

    def withdrawn(self) -> None:
        self.queue_depth.dec()

    def started(self, queue_seconds: float) -> None:
        self.queue_depth.dec()
        self.in_flight.inc()
        self.queue_wait.observe(queue_seconds)

    def finished(self, inference_seconds: float) -> None:
        self.in_flight.dec()
        self.inference_duration.observe(inference_seconds)


def duration_histogram(name: str, documentation: str, registry: CollectorRegistry) -> Histogram:
    return Histogram(name, documentation, buckets=DURATION_BUCKETS, registry=registry)


def live_gauge(name: str, documentation: str, registry: CollectorRegistry) -> Gauge:
    # livesum: the sum over live processes only; a dead process's files are
    # removed, so a crashed process cannot leave its count behind forever.
    return Gauge(name, documentation, multiprocess_mode="livesum", registry=registry)


def model_ready_gauge(registry: CollectorRegistry | None) -> Gauge:
    # livemostrecent: the model process writes 0 then 1 as it loads, and the
    # supervisor writes 0 when the model process dies; the latest write of a
    # live process is the truth, and a restart reads 0 until the reload is done.
    return Gauge(MODEL_READY, MODEL_READY_HELP, multiprocess_mode="livemostrecent", registry=registry)


# Why the pod's model process ended while the pod served: it died (crashed,
# killed from outside, out of memory), it was wedged (killed by the
# supervisor's watchdog, MODEL_WATCHDOG_SECONDS), or it ended itself to free a
# slot stuck in an inference past INFERENCE_TIMEOUT_SECONDS.
DIED = "died"
WEDGED = "wedged"
TIMED_OUT = "timed_out"


def model_restarts_counter() -> Counter:
    """The supervisor's, the one process that sees the model process end;
    written to the multiprocess directory like every other process's."""
    counter = Counter(
        "inference_model_process_restarts",
        "Model processes of this pod that ended and were restarted, by reason (died, wedged, timed_out).",
        ["reason"],
        registry=None,
    )
    for reason in (DIED, WEDGED, TIMED_OUT):
        counter.labels(reason=reason)  # every series exists from the start: increase() sees the first one
    return counter


class RequestMetrics:
    """An HTTP worker's metrics: how inference requests ended, and what callers waited."""

    def __init__(self, registry: CollectorRegistry):
        self.request_duration = duration_histogram(
            "inference_request_duration_seconds",
            "Time from admission to answer of an inference request, queue wait included.",
            registry,
        )
        self.requests = Counter(
            "inference_requests",
            "Inference requests by outcome: success, error (the model failed, ran over its time "
            "limit, or its process died under the request) or rejected (not admitted: queue full, "
            "shutting down, no model loaded).",
            ["status"],
            registry=registry,
        )
        for status in STATUSES:
            self.requests.labels(status=status)

    def answered(self, status: str, request_seconds: float) -> None:
        """An admitted request ended; its duration feeds the HPA metric."""
        self.requests.labels(status=status).inc()
        self.request_duration.observe(request_seconds)

    def rejected(self) -> None:
        # Not observed in request_duration: instant refusals would pull the
        # average down exactly when the pod is overloaded and must scale out.
        self.requests.labels(status=REJECTED).inc()


class ConnectionMetrics:
    """An HTTP worker's connections: how many are still sending a request, and timeouts."""

    def __init__(self, registry: CollectorRegistry):
        self.receiving = live_gauge(
            "inference_http_receiving_connections",
            "Connections part-way through sending a request (headers or body) that did not "
            "arrive in one read: slow or stalled clients. Healthy ones read 0 within milliseconds.",
            registry,
        )
        self.timeouts = Counter(
            "inference_http_request_timeouts",
            "Requests refused with 408 because their headers and body did not arrive within REQUEST_TIMEOUT_SECONDS.",
            registry=registry,
        )
