"""Configuration comes from the environment, is typed, and refuses nonsense at start."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from inferscale.settings import InferenceMode, Settings


def test_environment_variables_are_read_and_typed(monkeypatch):
    monkeypatch.setenv("MODEL_CONCURRENCY", "3")
    monkeypatch.setenv("INFERENCE_MODE", "cpu")
    monkeypatch.setenv("INFERENCE_DURATION_SECONDS", "2.5")
    settings = Settings()
    assert settings.model_concurrency == 3
    assert settings.inference_mode is InferenceMode.CPU
    assert settings.inference_duration_seconds == 2.5


def test_retry_after_defaults_to_one_inference_rounded_up():
    assert Settings(inference_duration_seconds=2.2).retry_after == 3
    assert Settings(inference_duration_seconds=0).retry_after == 1
    assert Settings(retry_after_seconds=7).retry_after == 7


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"inference_duration_seconds": -1}, "greater than or equal to 0"),
        ({"model_concurrency": 0}, "greater than or equal to 1"),
        ({"inference_mode": "gpu"}, "'sleep' or 'cpu'"),
        ({"admin_port": 8080, "port": 8080}, "ADMIN_PORT must differ from PORT"),
        ({"request_timeout_seconds": 0}, "greater than 0"),
        ({"inference_jitter_seconds": 5, "inference_duration_seconds": 1}, "JITTER"),
        ({"model_name": "has space"}, "pattern"),
    ],
)
def test_bad_values_are_refused_with_a_message(overrides, fragment):
    with pytest.raises(ValidationError, match=fragment):
        Settings(**overrides)


def test_serve_refuses_bad_settings_with_exit_2_and_names_the_variable():
    result = subprocess.run(
        [sys.executable, "-m", "inferscale.cli", "serve"],
        env={"MODEL_CONCURRENCY": "zero", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "invalid settings" in result.stderr and "model_concurrency" in result.stderr
    assert "Traceback" not in result.stderr
