"""The simulated model: plain Python and numpy, nothing about HTTP.

Like a real model server it has a slow `load()` that allocates fixed memory and a
`predict()` that holds the caller for seconds. The arithmetic is a tiny
deterministic MLP so answers are checkable; the time is what matters.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np

from inferscale.settings import InferenceMode

HIDDEN_UNITS = 16
WEIGHT_SEED = 20261130
# A square matrix small enough that one multiply takes well under a millisecond,
# so `cpu` mode can stop within that of its deadline.
CPU_BURN_SIZE = 96
# A row is labelled positive from this probability on: ties go to the positive class.
POSITIVE_THRESHOLD = 0.5


class ModelNotLoaded(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    max_features: int
    load_seconds: float
    memory_mb: int
    inference_seconds: float
    jitter_seconds: float
    mode: InferenceMode


class Model:
    """A two-layer perceptron over zero-padded features, with simulated timing."""

    def __init__(self, spec: ModelSpec, clock=time.monotonic, sleep=time.sleep):
        self.spec = spec
        self._clock = clock
        self._sleep = sleep
        self._ballast: np.ndarray | None = None
        self._w1: np.ndarray | None = None
        self._w2: np.ndarray | None = None
        self._random = random.Random()

    @property
    def loaded(self) -> bool:
        return self._w1 is not None

    def load(self) -> None:
        started = self._clock()
        rng = np.random.default_rng(WEIGHT_SEED)
        w1 = rng.standard_normal((self.spec.max_features, HIDDEN_UNITS)) / np.sqrt(self.spec.max_features)
        w2 = rng.standard_normal(HIDDEN_UNITS) / np.sqrt(HIDDEN_UNITS)
        # ones() pages are touched when written, so the memory is resident (RSS),
        # as real weights are, instead of a lazily mapped zero page.
        self._ballast = np.ones(self.spec.memory_mb * 1024 * 1024, dtype=np.uint8)
        remaining = self.spec.load_seconds - (self._clock() - started)
        if remaining > 0:
            self._sleep(remaining)
        self._w2 = w2
        self._w1 = w1

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Score each row of a (batch, n_features) array; returns one probability per row."""
        # `load` sets w2 first: with w1 read first, both are there once w1 is.
        w1, w2 = self._w1, self._w2
        if w1 is None or w2 is None:
            raise ModelNotLoaded("the model is still loading")
        self._spend(self._duration())
        padded = np.zeros((rows.shape[0], self.spec.max_features))
        padded[:, : rows.shape[1]] = rows
        hidden = np.tanh(padded @ w1)
        return 1.0 / (1.0 + np.exp(-(hidden @ w2)))

    def _duration(self) -> float:
        jitter = self.spec.jitter_seconds
        return max(0.0, self.spec.inference_seconds + self._random.uniform(-jitter, jitter))

    def _spend(self, seconds: float) -> None:
        if seconds <= 0:
            return  # sleep(0) still gives up the GIL: measurable at thousands per second
        if self.spec.mode is InferenceMode.SLEEP:
            self._sleep(seconds)
            return
        deadline = self._clock() + seconds
        a = np.full((CPU_BURN_SIZE, CPU_BURN_SIZE), 0.5)
        while self._clock() < deadline:
            a = np.tanh(a @ a)


def label(probabilities: np.ndarray) -> np.ndarray:
    """The class of each row, 1 (positive) or 0, from `Model.predict`'s probabilities."""
    return (probabilities >= POSITIVE_THRESHOLD).astype(np.int64)
