"""The simulated model: deterministic answers, real memory, the configured time."""

from __future__ import annotations

import numpy as np
import pytest

from inferscale.model import Model, ModelNotLoaded, ModelSpec
from inferscale.settings import InferenceMode


def spec(**overrides) -> ModelSpec:
    base = dict(
        name="m",
        version="1",
        max_features=8,
        load_seconds=0,
        memory_mb=1,
        inference_seconds=0,
        jitter_seconds=0,
        mode=InferenceMode.SLEEP,
    )
    return ModelSpec(**{**base, **overrides})


def loaded(**overrides) -> Model:
    model = Model(spec(**overrides))
    model.load()
    return model


def test_predict_before_load_raises():
    with pytest.raises(ModelNotLoaded):
        Model(spec()).predict(np.ones((1, 2)))


def test_predictions_are_deterministic_probabilities_per_row():
    rows = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 4.0]])
    first, second = loaded().predict(rows), loaded().predict(rows)
    assert first.shape == (2,)
    assert np.array_equal(first, second)
    assert np.all((first > 0) & (first < 1))
    assert first[0] != first[1]


class Clock:
    """A clock that moves `tick` seconds per reading: waits are recorded, busy loops counted."""

    def __init__(self, tick: float = 0.0):
        self.now, self.tick, self.readings = 0.0, tick, 0

    def __call__(self) -> float:
        self.readings += 1
        self.now += self.tick
        return self.now


def test_load_waits_out_the_configured_time_and_allocates_the_weights():
    slept = []
    model = Model(spec(load_seconds=0.3, memory_mb=16), clock=Clock(), sleep=slept.append)
    model.load()
    assert slept == [pytest.approx(0.3)]
    assert model._ballast.nbytes == 16 * 1024 * 1024 and model.loaded


def test_sleep_mode_holds_the_slot_for_the_inference_time_without_computing():
    slept, clock = [], Clock(tick=0.001)
    model = Model(spec(inference_seconds=0.3, mode=InferenceMode.SLEEP), clock=clock, sleep=slept.append)
    model.load()
    readings = clock.readings
    model.predict(np.ones((1, 3)))
    assert slept == [pytest.approx(0.3)]
    assert clock.readings == readings  # no busy loop


def test_cpu_mode_computes_until_the_deadline_and_never_sleeps():
    slept, clock = [], Clock(tick=0.01)
    model = Model(spec(inference_seconds=0.3, mode=InferenceMode.CPU), clock=clock, sleep=slept.append)
    model.load()
    readings = clock.readings
    model.predict(np.ones((1, 3)))
    assert slept == []
    # One reading for the deadline, then one per matrix multiply until 0.3 s have passed.
    assert clock.readings - readings == pytest.approx(0.3 / 0.01 + 1, abs=1)


def test_jitter_spreads_durations_within_bounds():
    slept = []
    model = Model(spec(inference_seconds=1.0, jitter_seconds=0.5), sleep=slept.append)
    model.load()
    for _ in range(50):
        model.predict(np.ones((1, 1)))
    assert all(0.5 <= s <= 1.5 for s in slept)
    assert max(slept) - min(slept) > 0.3
