"""The model behind its executor: load in the background, admit, time. No HTTP.

It runs in the pod's one model process (served to the HTTP workers by
`model_process`), or inside a test's own process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from inferscale.backend import ModelStatus, Outcome
from inferscale.errors import InferenceFailed, InferenceLost, ModelUnavailable
from inferscale.executor import ModelExecutor
from inferscale.metrics import ModelMetrics
from inferscale.model import Model, ModelSpec
from inferscale.settings import Settings

log = logging.getLogger(__name__)


def model_from_settings(settings: Settings) -> Model:
    return Model(
        ModelSpec(
            name=settings.model_name,
            version=settings.model_version,
            max_features=settings.max_features,
            load_seconds=settings.model_load_seconds,
            memory_mb=settings.model_memory_mb,
            inference_seconds=settings.inference_duration_seconds,
            jitter_seconds=settings.inference_jitter_seconds,
            mode=settings.inference_mode,
        )
    )


class InferenceService:
    """The pod's model slots and queue. `on_status` hears every change of `status()`."""

    def __init__(
        self,
        settings: Settings,
        metrics: ModelMetrics,
        model: Model,
        on_status: Callable[[ModelStatus], None] = lambda status: None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.model = model
        self.metrics = metrics
        self._on_status = on_status
        # A status is computed and told under one lock: one computed before a
        # change (the load ending as SIGTERM arrives) must not be told after it.
        self._status_lock = threading.Lock()
        # Opened when loading ends, however it ends: queued work must never wait
        # on a load that failed (it is answered ModelUnavailable first).
        self._load_finished = threading.Event()
        self._load_error: str | None = None
        self._restarting = False
        self.executor = ModelExecutor(
            self._predict,
            slots=settings.model_concurrency,
            max_queue=settings.max_queue,
            observer=metrics,
            gate=self._load_finished,
            clock=clock,
        )
        metrics.slots.set(settings.model_concurrency)
        metrics.model_ready.set(0)

    def status(self) -> ModelStatus:
        return ModelStatus(
            loaded=self.model.loaded,
            draining=self.executor.draining,
            restarting=self._restarting,
            load_error=self._load_error,
        )

    def start_loading(self) -> threading.Thread:
        """Load in the background so the status answers (and work queues) meanwhile."""
        thread = threading.Thread(target=self._load, name="model-load", daemon=True)
        thread.start()
        return thread

    def submit(self, rows: np.ndarray, on_done: Callable[[Future[Outcome]], None] | None = None) -> Future[Outcome]:
        """Admit one request or raise `Rejected`; the future raises the other domain
        errors. `on_done` is called with the future once it is answered."""
        return self.executor.submit(rows, on_done)

    def infer(self, rows: np.ndarray) -> Outcome:
        return self.submit(rows).result()

    def drain(self, timeout: float) -> bool:
        """Refuse new work, finish admitted work within `timeout` s; True if all finished."""
        self.executor.refuse_new_work()
        self.publish_status()
        return self.executor.wait_idle(timeout)

    def prepare_restart(self, why: str) -> int:
        """This process is about to end and be replaced: take no new work, and
        answer the queued now (nothing of theirs ran, so a retry is safe)
        instead of leaving them to wait on slots that may never free. How many
        queued requests were answered."""
        self.executor.refuse_new_work(ModelUnavailable(f"the model process is restarting: {why}"))
        self._restarting = True
        self.metrics.model_ready.set(0)
        self.publish_status()
        return self.executor.abandon_queued(
            InferenceLost(f"the model process is restarting before running this: {why}")
        )

    def _predict(self, rows: np.ndarray) -> np.ndarray:
        try:
            return self.model.predict(rows)
        except Exception as error:
            log.exception("inference failed")
            raise InferenceFailed("the model failed on this request") from error

    def _load(self) -> None:
        started = time.monotonic()
        try:
            self.model.load()
            self.metrics.model_ready.set(1)
            log.info("model %s loaded in %.1f s", self.model.spec.name, time.monotonic() - started)
        except Exception as error:  # a failed load must surface in /health, not vanish
            self._load_error = f"{type(error).__name__}: {error}"
            log.exception("model load failed")
            # Refused at the door from now on, and the queued answered: no slot
            # runs them, and the inference histograms see no empty "inference".
            refusal = ModelUnavailable("the model failed to load")
            self.executor.refuse_new_work(refusal)
            self.executor.abandon_queued(refusal)
        finally:
            self._load_finished.set()
            self.publish_status()

    def publish_status(self) -> None:
        """Tell `on_status` the status now."""
        with self._status_lock:
            self._on_status(self.status())
