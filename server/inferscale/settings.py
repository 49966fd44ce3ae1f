"""Every runtime setting, read once from the environment into one typed object."""

from __future__ import annotations

import math
from enum import Enum

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

class InferenceMode(str, Enum):
    SLEEP = "sleep"  # holds the slot without CPU, like waiting on an accelerator
    CPU = "cpu"  # burns CPU with numpy, like inference on the host


class Settings(BaseSettings):
    """Environment variables, unprefixed (`MODEL_CONCURRENCY=2`), validated at start."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    host: str = Field("0.0.0.0", description="Address gunicorn binds, both ports.")
    port: int = Field(8080, ge=1, le=65535, description="Port for every route, /metrics included.")
    admin_port: int = Field(
        8081, ge=1, le=65535, description="Port for /health, /ready and /metrics only."
    )
    workers: int = Field(2, ge=1, description="gunicorn HTTP worker processes (no model in them).")
    worker_connections: int = Field(
        1000, ge=1, description="Open connections per worker and port; more wait in the backlog."
    )
    request_timeout_seconds: float = Field(
        10.0, gt=0, description="Time for a request's headers and body to arrive; then 408."
    )

    model_name: str = Field(
        "inferscale", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description="Name in V2 routes."
    )
    model_version: str = Field("1", description="Version reported by the V2 metadata route.")
    model_load_seconds: float = Field(5.0, ge=0, description="Simulated weight loading time.")
    model_memory_mb: int = Field(64, ge=0, description="Weights allocated (and touched), once per pod.")
    max_features: int = Field(256, ge=1, le=65536, description="Longest accepted feature vector.")
    max_batch_size: int = Field(64, ge=1, description="Most rows in one V2 infer tensor.")

    inference_duration_seconds: float = Field(10.0, ge=0, description="Simulated inference time.")
    inference_mode: InferenceMode = Field(InferenceMode.SLEEP, description="sleep or cpu.")
    inference_jitter_seconds: float = Field(0.0, ge=0, description="Uniform +/- jitter.")

    model_concurrency: int = Field(2, ge=1, description="Model slots (inferences at once) per pod.")
    max_queue: int = Field(8, ge=0, description="Requests that may wait for a slot, per pod.")
    retry_after_seconds: int = Field(
        0, ge=0, description="Retry-After on 503; 0 = one inference duration, rounded up."
    )
    max_body_bytes: int = Field(1_048_576, ge=64, description="Larger bodies get 413.")

    graceful_shutdown_seconds: float = Field(
        60.0, ge=0, description="After SIGTERM: time for in-flight and queued work to finish."
    )
    worker_timeout_seconds: int = Field(30, ge=1, description="gunicorn heartbeat timeout.")
    keepalive_seconds: int = Field(5, ge=0, description="HTTP keep-alive idle timeout.")
    max_connection_age_seconds: float = Field(
        30.0, ge=0,
        description="A keep-alive connection this old is closed after its current response; 0 = never.",
    )
    max_requests: int = Field(0, ge=0, description="Recycle a worker after this many; 0 = never.")
    max_requests_jitter: int = Field(0, ge=0, description="Random spread of MAX_REQUESTS.")

    prometheus_multiproc_dir: str = Field(
        "/tmp/inferscale-metrics", description="Shared directory of per-process metric files."
    )
    log_level: str = Field("info", pattern=r"^(debug|info|warning|error|critical)$")

    @model_validator(mode="after")
    def _check_consistency(self) -> "Settings":
        if self.inference_jitter_seconds > self.inference_duration_seconds:
            raise ValueError("INFERENCE_JITTER_SECONDS must not exceed INFERENCE_DURATION_SECONDS")
        if self.admin_port == self.port:
            raise ValueError("ADMIN_PORT must differ from PORT")
        return self

    @property
    def retry_after(self) -> int:
        return self.retry_after_seconds or max(1, math.ceil(self.inference_duration_seconds))
