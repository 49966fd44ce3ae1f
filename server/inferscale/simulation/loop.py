"""The whole autoscaling loop as a discrete-event simulation.

What is modelled, and how it maps onto the real parts:

- Pods (the server after its placement fix): `slots` inferences at once per
  pod and one queue of `max_queue` per pod; a request is served by the first
  free slot, waits in the queue otherwise, and is refused (503) when the
  queue is full. Refusals are not observed in the duration histogram, as
  the server does not observe them.
- A new pod is Pending for `start_seconds` (scheduling, container start),
  then Running: its /metrics answers and Prometheus scrapes it; it turns
  Ready after `model_load_seconds` and the next startup probe: the kubelet
  probes readiness at once when the startup probe first succeeds
  (`UpdatePodStatus`, pkg/kubelet/prober/prober_manager.go), so the startup
  probe's period, not the readiness probe's, sets the phase. Only Ready
  pods get requests; kube-proxy picks one at random per request.
- The cluster runs at most `max_running_pods` at once (None: no bound), as
  a node's allocatable CPU against the pods' requests bounds them; a pod
  beyond it stays Pending, with no metric, until a deleted one has gone.
- Scale-in deletes, as the ReplicaSet ranks them, Pending pods first, then
  not-ready ones, then the most recently ready; a deleted pod leaves the
  Service at once and finishes what it holds.
- Prometheus scrapes every Running pod every `scrape_interval` (each pod at
  its own phase) and the adapter's query reads, per pod, the increase of
  the histogram's sum over that of its count between the first and the last
  sample in the window: a value only with two samples, 0 for a pod seen
  idle (the chart's rule). The extrapolation of rate() scales both alike.
  A second metric, for HpaSpec.held_target only: the requests a pod holds
  (running and queued) at each scrape, averaged over the window's samples,
  from its first one on (avg_over_time needs no second, unlike rate()).
- The adapter asks Prometheus at each HPA request, naming the pods the HPA
  asks for, so a new pod needs no relist (its relist only discovers metric
  names, once after an install): not modelled. The HPA controller (hpa.py)
  syncs every `sync_period`.
- The run starts from `minReplicas` (or the fixed count) pods that have
  long been up and idle: their metric reads 0 from the first sync.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from .hpa import Controller, HpaSpec, PodView
from .load import Shape, arrivals


@dataclass(frozen=True)
class Timing:
    scrape_interval: float = 15.0
    rate_window: float = 60.0
    sync_period: float = 15.0


@dataclass(frozen=True)
class PodModel:
    slots: int = 2
    max_queue: int = 8
    inference_seconds: float = 10.0
    start_seconds: float = 3.0
    model_load_seconds: float = 5.0
    startup_probe_period: float = 2.0


@dataclass
class Pod:
    name: str
    created: float
    running_at: float
    ready_at: float
    deleted: bool = False
    busy: int = 0
    queue: deque = field(default_factory=deque)
    duration_sum: float = 0.0
    duration_count: int = 0
    samples: deque = field(default_factory=deque)  # (time, sum, count, held: running + queued)

    def ready(self, now: float) -> bool:
        return not self.deleted and now >= self.ready_at

    @property
    def scheduled(self) -> bool:
        """Given a node: its start is set (a pod with no room has none yet)."""
        return self.running_at != math.inf

    def idle(self) -> bool:
        return self.busy == 0 and not self.queue


@dataclass(frozen=True)
class Sync:
    """What the HPA saw and did at one sync."""

    at: float
    replicas: int  # the Deployment's spec.replicas before the sync
    ready: int
    desired: int
    value: float | None
    held: float | None = None  # the second metric's average (HpaSpec.held_target); None without it


@dataclass
class Trace:
    syncs: list[Sync] = field(default_factory=list)
    arrived: int = 0
    # (arrival time, duration) of each answered request; refusals by arrival time.
    answered: list[tuple[float, float]] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    # (time, spec.replicas) at every change, from (0, initial).
    replicas: list[tuple[float, int]] = field(default_factory=list)
    # (time, Ready pods) at every change, from (0, initial).
    ready: list[tuple[float, int]] = field(default_factory=list)


class Loop:
    """One run: `Loop(...).run(shape, seconds)` returns the Trace."""

    def __init__(
        self,
        hpa: HpaSpec | None,
        pod: PodModel,
        timing: Timing,
        arrivals_kind: str = "poisson",
        seed: int = 1,
        fixed_replicas: int | None = None,
        user_rps: float = 0.2,
        max_running_pods: int | None = None,
    ):
        if hpa is not None and fixed_replicas is None:
            initial = hpa.min_replicas
        elif hpa is None and fixed_replicas is not None:
            initial = fixed_replicas
        else:
            raise ValueError("either an HPA or a fixed replica count")
        self.controller = Controller(hpa) if hpa else None
        self.pod_model = pod
        self.timing = timing
        self.arrivals_kind = arrivals_kind
        self.user_rps = user_rps
        self.max_running_pods = max_running_pods
        self.rng = random.Random(seed)
        # The arrivals draw from their own generator: every run of a seed, with
        # an HPA or a fixed count, for any length, is offered the same requests,
        # whatever the pods and the scrapes draw meanwhile.
        self.arrival_rng = random.Random(f"arrivals {seed}")
        self.pods: list[Pod] = []
        self.spec_replicas = 0
        self.trace = Trace()
        self._events: list = []
        self._order = itertools.count()
        self._names = itertools.count()
        self._initial = initial

    # --- the event queue ------------------------------------------------------

    def _at(self, time: float, action, *args) -> None:
        heapq.heappush(self._events, (time, next(self._order), action, args))

    def run(self, shape: Shape, seconds: float) -> Trace:
        return self.replay(arrivals(self.arrivals_kind, shape, seconds, self.arrival_rng, self.user_rps), seconds)

    def replay(self, times: Iterable[float], seconds: float) -> Trace:
        """The run with these arrival times (a real run's, say) instead of drawn ones."""
        self._scale_to(0.0, self._initial, warm=True)
        for t in times:
            if 0 <= t < seconds:
                self._at(t, self._arrive)
        if self.controller:
            self._at(self.rng.uniform(0, self.timing.sync_period), self._sync, self.controller)
        while self._events:
            now, _, action, args = heapq.heappop(self._events)
            if now > seconds:
                break
            action(now, *args)
        return self.trace

    # --- the Deployment ----------------------------------------------------------

    def _scale_to(self, now: float, replicas: int, warm: bool = False) -> None:
        self.spec_replicas = replicas
        self.trace.replicas.append((now, replicas))
        live = [p for p in self.pods if not p.deleted]
        for _ in range(replicas - len(live)):
            self._create(now, warm)
        for pod in self._deletion_order(now, live)[: max(0, len(live) - replicas)]:
            pod.deleted = True
            self._forget_if_done(now, pod)
        self._count_ready(now)

    def _create(self, now: float, warm: bool) -> None:
        pod = Pod(f"pod-{next(self._names)}", now, running_at=math.inf, ready_at=math.inf)
        self.pods.append(pod)
        if warm:  # scraped idle for a window already: events before 0 run first
            first_scrape = now + self.rng.uniform(0, self.timing.scrape_interval)
            pod.running_at, pod.ready_at = -10 * self.timing.rate_window, now
            self._at(first_scrape - self.timing.rate_window - self.timing.scrape_interval, self._scrape, pod)
        elif self._room_for_one_more():
            self._start(now, pod)

    def _start(self, now: float, pod: Pod) -> None:
        """Scheduled: the container starts, then the model loads."""
        model = self.pod_model
        first_scrape = now + self.rng.uniform(0, self.timing.scrape_interval) + model.start_seconds
        pod.running_at = now + model.start_seconds
        pod.ready_at = pod.running_at + model.model_load_seconds + self.rng.uniform(0, model.startup_probe_period)
        self._at(first_scrape, self._scrape, pod)
        self._at(pod.ready_at, self._count_ready)

    def _count_ready(self, now: float) -> None:
        ready = sum(p.ready(now) for p in self.pods)
        if not self.trace.ready or self.trace.ready[-1][1] != ready:
            self.trace.ready.append((now, ready))

    def _room_for_one_more(self) -> bool:
        # Deleted pods still finishing their work hold their share of the node.
        scheduled = sum(1 for p in self.pods if p.scheduled)
        return self.max_running_pods is None or scheduled < self.max_running_pods

    @staticmethod
    def _deletion_order(now: float, pods: list[Pod]) -> list[Pod]:
        def rank(pod: Pod):
            return (now >= pod.running_at, pod.ready(now), -pod.ready_at if pod.ready(now) else 0, -pod.created)

        return sorted(pods, key=rank)

    def _forget_if_done(self, now: float, pod: Pod) -> None:
        if pod.deleted and pod.idle():
            self.pods.remove(pod)
            self._schedule_pending(now)

    def _schedule_pending(self, now: float) -> None:
        for pod in self.pods:
            if not pod.scheduled and not pod.deleted and self._room_for_one_more():
                self._start(now, pod)

    # --- requests -----------------------------------------------------------------

    def _arrive(self, now: float) -> None:
        self.trace.arrived += 1
        ready = [p for p in self.pods if p.ready(now)]
        if not ready:
            self.trace.refused.append(now)
            return
        pod = self.rng.choice(ready)
        if pod.busy < self.pod_model.slots:
            pod.busy += 1
            self._at(now + self.pod_model.inference_seconds, self._complete, pod, now)
        elif len(pod.queue) < self.pod_model.max_queue:
            pod.queue.append(now)
        else:
            self.trace.refused.append(now)

    def _complete(self, now: float, pod: Pod, arrived: float) -> None:
        pod.duration_sum += now - arrived
        pod.duration_count += 1
        self.trace.answered.append((arrived, now - arrived))
        if pod.queue:
            self._at(now + self.pod_model.inference_seconds, self._complete, pod, pod.queue.popleft())
        else:
            pod.busy -= 1
            self._forget_if_done(now, pod)

    # --- Prometheus, the adapter, the HPA -------------------------------------------

    def _scrape(self, now: float, pod: Pod) -> None:
        if pod.deleted:
            return
        pod.samples.append((now, pod.duration_sum, pod.duration_count, pod.busy + len(pod.queue)))
        while pod.samples and pod.samples[0][0] < now - self.timing.rate_window - self.timing.scrape_interval:
            pod.samples.popleft()
        self._at(now + self.timing.scrape_interval, self._scrape, pod)

    def _window(self, pod: Pod, now: float) -> list[tuple]:
        """The pod's samples in the rate window."""
        if now < pod.running_at:
            return []
        return [s for s in pod.samples if now - self.timing.rate_window < s[0] <= now]

    def value(self, pod: Pod, now: float) -> float | None:
        """The adapter's answer for `pod` at `now`: the average duration, 0 when seen idle.

        rate() needs two samples: None with fewer (no value, as the chart's rule)."""
        window = self._window(pod, now)
        if len(window) < 2:
            return None
        (_, first_sum, first_count, _), (_, last_sum, last_count, _) = window[0], window[-1]
        count = last_count - first_count
        return (last_sum - first_sum) / count if count else 0.0

    def held(self, pod: Pod, now: float) -> float | None:
        """The companion metric: requests held (running and queued), averaged over the window's scrapes.

        avg_over_time answers from one sample, so a pod scraped once has a value."""
        window = self._window(pod, now)
        return sum(s[3] for s in window) / len(window) if window else None

    def _sync(self, now: float, controller: Controller) -> None:
        live = [p for p in self.pods if not p.deleted]
        views = [PodView(p.name, now >= p.running_at, self.value(p, now), self.held(p, now)) for p in live]
        decision = controller.sync(now, self.spec_replicas, views)
        self.trace.syncs.append(
            Sync(
                now,
                self.spec_replicas,
                sum(p.ready(now) for p in live),
                decision.desired,
                decision.value,
                decision.held,
            )
        )
        if decision.scaling_active and decision.desired != self.spec_replicas:
            self._scale_to(now, decision.desired)
        self._at(now + self.timing.sync_period, self._sync, controller)
