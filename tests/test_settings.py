"""Configuration comes from the environment, is typed, and refuses nonsense at start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import requests
from pydantic import ValidationError

from inferscale.settings import InferenceMode, Settings, describe
from localcluster.loopback import LOOPBACK, free_port
from localcluster.servers import TEST_ENV, ServerProcess


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
        ({"admin_port": 8080, "port": 8080}, r"ADMIN_PORT \(8080\) must differ from PORT \(8080\)"),
        # One request's rows must fit the one msgpack bin that carries them to the model process.
        ({"max_batch_size": 4096, "max_features": 65536}, r"MAX_BATCH_SIZE x MAX_FEATURES \(4096 x 65536\)"),
        ({"keepalive_seconds": 86_401}, "less than or equal to 86400"),
        ({"request_timeout_seconds": 0}, "greater than 0"),
        (
            {"inference_jitter_seconds": 5, "inference_duration_seconds": 1},
            r"INFERENCE_JITTER_SECONDS \(5\) must not exceed INFERENCE_DURATION_SECONDS \(1\)",
        ),
        ({"inference_timeout_seconds": 0.5, "inference_duration_seconds": 0}, r"0 \(off\) or at least 1"),
        # The longest inference as configured would reach the limit.
        (
            {"inference_timeout_seconds": 12, "inference_duration_seconds": 10, "inference_jitter_seconds": 2},
            r"TIMEOUT_SECONDS \(12\) must exceed INFERENCE_DURATION_SECONDS \+ INFERENCE_JITTER_SECONDS \(12\)",
        ),
        ({"model_name": "has space"}, "pattern"),
        # A version the V2 routes could not be asked for by its path.
        ({"model_version": "a/b c"}, "pattern"),
        # time.sleep and the timeouts overflow on these; gevent's semaphore on too many connections.
        ({"inference_duration_seconds": float("inf")}, "finite number"),
        ({"model_load_seconds": 1e308}, "less than or equal to 86400"),
        ({"worker_connections": 99_999_999_999}, "less than or equal to 100000"),
        ({"workers": 100_000}, "less than or equal to 64"),
        # Typos that would pass start-up and fail only as a model that never loads.
        ({"model_memory_mb": 10**20}, "less than or equal to 1048576"),
        ({"model_concurrency": 10**8}, "less than or equal to 1024"),
        ({"max_queue": 10**21}, "less than or equal to 100000"),
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
    assert "invalid settings" in result.stderr
    assert "MODEL_CONCURRENCY='zero': Input should be a valid integer" in result.stderr
    assert "Traceback" not in result.stderr and "errors.pydantic.dev" not in result.stderr


def test_serve_names_each_bad_setting_on_a_line_of_its_own_and_the_flag_that_set_it():
    result = subprocess.run(
        [sys.executable, "-m", "inferscale.cli", "serve", "--port", "0", "--workers", "2.0"],
        env={"INFERENCE_TIMEOUT_SECONDS": "5", "LOG_LEVEL": "loud", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    # A flag is parsed as its variable is: `--workers 2.0` as `WORKERS=2.0`.
    assert result.stderr.splitlines()[1:] == [
        "  PORT (--port)='0': Input should be greater than or equal to 1",
        "  LOG_LEVEL='loud': String should match pattern '^(debug|info|warning|error|critical)$'",
    ]
    fixed = subprocess.run(
        [sys.executable, "-m", "inferscale.cli", "serve", "--port", "8000"],
        env={"INFERENCE_TIMEOUT_SECONDS": "5", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    # A rule across settings names its variables itself.
    assert fixed.stderr.splitlines()[1].startswith("  INFERENCE_TIMEOUT_SECONDS (5) must exceed ")


def test_text_settings_are_trimmed_as_numbers_are():
    settings = Settings(host=" 127.0.0.1\n", log_level="debug ", port=" 8000 ", inference_mode=" cpu")
    assert (settings.host, settings.log_level, settings.port) == ("127.0.0.1", "debug", 8000)
    assert settings.inference_mode is InferenceMode.CPU


def test_a_rule_across_settings_names_the_flag_that_set_one_of_them():
    with pytest.raises(ValidationError) as refused:
        Settings(port=8081)
    assert describe(refused.value, {"PORT": "--port"}) == [
        "ADMIN_PORT (8081) must differ from PORT (8081) (PORT from --port)"
    ]


def serve(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "inferscale.cli", "serve"],
        env={**os.environ, **TEST_ENV, "HOST": LOOPBACK, "PORT": str(free_port()), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_says_in_one_line_which_port_is_taken(tmp_path):
    with socket.create_server((LOOPBACK, 0)) as taken:
        port = taken.getsockname()[1]
        result = serve({"ADMIN_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")})
    assert result.returncode == 2
    assert f"inferscale: cannot listen on HOST={LOOPBACK} ADMIN_PORT={port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_says_in_one_line_that_its_metrics_directory_cannot_be_one(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = serve({"ADMIN_PORT": str(free_port()), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "a-file")})
    assert result.returncode == 2
    assert f"inferscale: PROMETHEUS_MULTIPROC_DIR={tmp_path / 'a-file'}: File exists" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_listens_on_an_ipv6_address(tmp_path):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError as error:
        pytest.skip(f"this machine has no IPv6 loopback: {error}")

    def on_ipv6(port: int) -> list[str]:
        cli = [sys.executable, "-m", "inferscale.cli", "serve", "--host", "::1", "--workers", "1"]
        return [*cli, "--port", str(port), "--admin-port", str(free_port())]

    server = ServerProcess(tmp_path, {}, command=on_ipv6)
    # The main port serves the probes too.
    server.url = server.admin_url = f"http://[::1]:{server.port}"
    server.start()
    try:
        answer = requests.post(server.url + "/predict", json={"features": [1, 2]}, timeout=10)
        assert answer.status_code == 200, answer.text
    finally:
        server.stop()
