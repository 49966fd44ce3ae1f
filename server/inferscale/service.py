"""The model behind its executor: load in the background, admit, time, count. No HTTP."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from inferscale.executor import ModelExecutor, Outcome, Rejected
from inferscale.metrics import ERROR, SUCCESS, InferenceMetrics
from inferscale.model import Model, ModelSpec
from inferscale.settings import Settings

log = logging.getLogger(__name__)


class InferenceFailed(Exception):
    """The model raised while serving an admitted request."""


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
    def __init__(self, settings: Settings, metrics: InferenceMetrics, model: Model):
        self.model = model
        self.metrics = metrics
        # Opened when loading ends, however it ends: queued work must never wait
        # on a load that failed (it then fails fast with ModelNotLoaded).
        self._load_finished = threading.Event()
        self.load_error: BaseException | None = None
        self.executor = ModelExecutor(
            model.predict,
            slots=settings.model_concurrency,
            max_queue=settings.max_queue,
            observer=metrics,
            gate=self._load_finished,
        )
        metrics.model_ready.set(0)

    @property
    def loaded(self) -> bool:
        return self.model.loaded

    @property
    def draining(self) -> bool:
        return self.executor.draining

    @property
    def ready(self) -> bool:
        return self.loaded and not self.draining

    def start_loading(self) -> threading.Thread:
        """Load in the background so /health answers (and work queues) meanwhile."""
        thread = threading.Thread(target=self._load, name="model-load", daemon=True)
        thread.start()
        return thread

    def infer(self, rows: np.ndarray) -> Outcome:
        """Run one request; raises Rejected (not admitted) or InferenceFailed."""
        admitted_at = time.monotonic()
        try:
            future = self.executor.submit(rows)
        except Rejected:
            self.metrics.rejected()
            raise
        try:
            outcome = future.result()
        except Exception as error:
            self.metrics.answered(ERROR, time.monotonic() - admitted_at)
            log.exception("inference failed")
            raise InferenceFailed(str(error)) from error
        self.metrics.answered(SUCCESS, time.monotonic() - admitted_at)
        return outcome

    def drain(self, timeout: float) -> bool:
        return self.executor.drain(timeout)

    def _load(self) -> None:
        started = time.monotonic()
        try:
            self.model.load()
            self.metrics.model_ready.set(1)
            log.info("model %s loaded in %.1f s", self.model.spec.name, time.monotonic() - started)
        except Exception as error:  # a failed load must surface in /health, not vanish
            self.load_error = error
            log.exception("model load failed")
        finally:
            self._load_finished.set()
