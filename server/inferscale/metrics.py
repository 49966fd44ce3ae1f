"""The metric contract of DESIGN.md: the names the adapter rules, chart and tests rely on."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Inference takes seconds and a queued request waits for whole inferences, so
# the buckets are dense from 1 s to 20 s (around the 10 s default) and reach
# 5 minutes for a long queue; sub-second buckets show fast rejections of work
# that never queued and runs of a shortened test model.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 6, 7.5, 9,
    10, 11, 12.5, 15, 20, 25, 30, 45, 60, 90, 120, 180, 300,
)

SUCCESS = "success"
ERROR = "error"
REJECTED = "rejected"
STATUSES = (SUCCESS, ERROR, REJECTED)


class InferenceMetrics:
    """Owns every inference metric; also the executor's observer."""

    def __init__(self, registry: CollectorRegistry):
        self.request_duration = Histogram(
            "inference_request_duration_seconds",
            "Time from admission to answer of an inference request, queue wait included.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.inference_duration = Histogram(
            "inference_duration_seconds",
            "Model compute time of one inference request.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "inference_queue_wait_seconds",
            "Time an admitted request waited for a free model slot.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "inference_requests",
            "Inference requests by outcome: success, error (the model failed) or rejected "
            "(not admitted: queue full or shutting down).",
            ["status"],
            registry=registry,
        )
        # livesum: a dead worker's files are removed by mark_process_dead, so a
        # crashed worker cannot leave a request "in flight" forever.
        self.in_flight = Gauge(
            "inference_in_flight_requests",
            "Inference requests running on the model now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "inference_queue_depth",
            "Admitted inference requests waiting for a model slot now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        # livemin: the pod reads 1 only when every live worker has its model.
        self.model_ready = Gauge(
            "inference_model_ready",
            "1 once the model is loaded in every live worker process, else 0.",
            multiprocess_mode="livemin",
            registry=registry,
        )
        for status in STATUSES:
            self.requests.labels(status=status)

    def admitted(self) -> None:
        self.queue_depth.inc()

    def started(self, queue_seconds: float) -> None:
        self.queue_depth.dec()
        self.in_flight.inc()
        self.queue_wait.observe(queue_seconds)

    def finished(self, inference_seconds: float) -> None:
        self.in_flight.dec()
        self.inference_duration.observe(inference_seconds)

    def answered(self, status: str, request_seconds: float) -> None:
        """An admitted request ended; its duration feeds the HPA metric."""
        self.requests.labels(status=status).inc()
        self.request_duration.observe(request_seconds)

    def rejected(self) -> None:
        # Not observed in request_duration: instant refusals would pull the
        # average down exactly when the pod is overloaded and must scale out.
        self.requests.labels(status=REJECTED).inc()
