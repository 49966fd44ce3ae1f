"""The simulated model: deterministic answers, real memory, the configured time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from inferscale.model import Model, ModelNotLoaded, ModelSpec
from inferscale.settings import InferenceMode


def spec(**overrides) -> ModelSpec:
    base = dict(name="m", version="1", max_features=8, load_seconds=0, memory_mb=1,
                inference_seconds=0, jitter_seconds=0, mode=InferenceMode.SLEEP)
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


def test_load_takes_the_configured_time_and_allocates_the_weights():
    model = Model(spec(load_seconds=0.3, memory_mb=16))
    started = time.monotonic()
    model.load()
    assert time.monotonic() - started == pytest.approx(0.3, abs=0.1)
    assert model._ballast.nbytes == 16 * 1024 * 1024


@pytest.mark.parametrize("mode", [InferenceMode.SLEEP, InferenceMode.CPU])
def test_inference_takes_the_configured_time_in_either_mode(mode):
    model = loaded(inference_seconds=0.3, mode=mode)
    started = time.monotonic()
    model.predict(np.ones((1, 3)))
    assert time.monotonic() - started == pytest.approx(0.3, abs=0.1)


def test_cpu_mode_burns_cpu_and_sleep_mode_does_not():
    def cpu_seconds(mode):
        model = loaded(inference_seconds=0.3, mode=mode)
        started = time.process_time()
        model.predict(np.ones((1, 3)))
        return time.process_time() - started

    assert cpu_seconds(InferenceMode.CPU) > 0.2
    assert cpu_seconds(InferenceMode.SLEEP) < 0.05


def test_jitter_spreads_durations_within_bounds():
    slept = []
    model = Model(spec(inference_seconds=1.0, jitter_seconds=0.5), sleep=slept.append)
    model.load()
    for _ in range(50):
        model.predict(np.ones((1, 1)))
    assert all(0.5 <= s <= 1.5 for s in slept)
    assert max(slept) - min(slept) > 0.3
