"""Every runtime setting, read once from the environment into one typed object."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from enum import Enum

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A model's name or version as a V2 path segment can carry it.
V2_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
# The longest any duration setting may be: longer is a typo, and overflows some timers.
DAY_SECONDS = 86_400
# A request's rows reach the model process as one msgpack message of float64,
# and msgpack's reader takes at most 2 GiB (its limit 0 is INT_MAX, not the 4 GiB
# its docstring says); the rest of the message needs a few bytes.
MAX_ROWS_BYTES = 2**31 - 1024
# Typos, caught at start rather than as a model that never loads or a pod that
# runs out of threads: a terabyte of weights, a thousand threads of slots.
MAX_MODEL_MEMORY_MB = 1_048_576
MAX_SLOTS = 1024
MAX_QUEUE = 100_000


class InferenceMode(str, Enum):
    SLEEP = "sleep"  # holds the slot without CPU, like waiting on an accelerator
    CPU = "cpu"  # burns CPU with numpy, like inference on the host


class Settings(BaseSettings):
    """Environment variables, unprefixed (`MODEL_CONCURRENCY=2`), validated at start."""

    # No infinities: `time.sleep` and the timeouts overflow on them, and no pod waits forever.
    # Text is trimmed as numbers are: `HOST=" 127.0.0.1"` from a quoted env file
    # would otherwise pass here and fail only as an address that cannot listen.
    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,
        str_strip_whitespace=True,
    )

    host: str = Field("0.0.0.0", min_length=1)
    """address to bind, both ports (`make run` uses `127.0.0.1`)"""
    port: int = Field(8080, ge=1, le=65535)
    """port for every route, `/metrics` and the probes included"""
    admin_port: int = Field(8081, ge=1, le=65535)
    """port for `/health`, `/ready` and `/metrics` only: the chart's probes and ServiceMonitor use it, so inference
    traffic and slow clients never crowd them out"""
    workers: int = Field(2, ge=1, le=64)
    """gunicorn HTTP worker processes (gevent); they parse, validate and forward to the model process, and hold no
    model"""
    worker_connections: int = Field(1000, ge=1, le=100_000)
    """open connections per worker and port; more wait in the listen backlog"""
    request_timeout_seconds: float = Field(10.0, gt=0, le=DAY_SECONDS)
    """time for a request's headers and body to arrive, from its first byte; slower ones get 408"""

    model_name: str = Field("inferscale", pattern=V2_NAME_PATTERN)
    """model name in the V2 routes"""
    model_version: str = Field("1", pattern=V2_NAME_PATTERN)
    """model version in the V2 routes"""
    model_load_seconds: float = Field(5.0, ge=0, le=DAY_SECONDS)
    """simulated weight loading time"""
    model_memory_mb: int = Field(64, ge=0, le=MAX_MODEL_MEMORY_MB)
    """weights allocated and touched, once per pod in the model process (resident memory)"""
    max_features: int = Field(256, ge=1, le=65536)
    """longest feature vector accepted (shorter ones are zero-padded)"""
    max_batch_size: int = Field(64, ge=1)
    """most rows in one V2 infer tensor"""

    inference_duration_seconds: float = Field(10.0, ge=0, le=DAY_SECONDS)
    """simulated inference time per request"""
    inference_mode: InferenceMode = InferenceMode.SLEEP
    """`sleep` holds the slot like waiting on an accelerator; `cpu` burns CPU with numpy"""
    inference_jitter_seconds: float = Field(0.0, ge=0)
    """uniform ± jitter on the inference time"""

    model_concurrency: int = Field(2, ge=1, le=MAX_SLOTS)
    """model slots per pod: inferences running at once"""
    max_queue: int = Field(8, ge=0, le=MAX_QUEUE)
    """requests that may wait for a slot, per pod"""
    retry_after_seconds: int = Field(0, ge=0, le=DAY_SECONDS)
    """`Retry-After` on 503; `0` = one inference duration, rounded up"""
    max_body_bytes: int = Field(1_048_576, ge=64)
    """larger request bodies get 413"""

    graceful_shutdown_seconds: float = Field(60.0, ge=0, le=DAY_SECONDS)
    """after SIGTERM, time for in-flight and queued work; the default covers `(MAX_QUEUE + MODEL_CONCURRENCY) × 10 s /
    MODEL_CONCURRENCY` = 50 s"""
    model_watchdog_seconds: float = Field(30.0, ge=0, le=DAY_SECONDS)
    """the supervisor kills and restarts a model process whose interpreter has not run for this long (a native call
    holding the GIL, a stopped process): its requests get 503 `inference_lost` instead of waiting forever; at least
    `1`, or `0` = never"""
    inference_timeout_seconds: float = Field(60.0, ge=0, le=DAY_SECONDS)
    """an inference running longer gets 504 `inference_timeout`. Its slot may stay stuck in a call that releases the
    GIL (a hung device, blocking I/O), which `MODEL_WATCHDOG_SECONDS` does not catch, so the model process is then
    replaced: it takes no new work, answers its queue with 503, lets what runs end (or time out) and is restarted.
    Must exceed `INFERENCE_DURATION_SECONDS` + `INFERENCE_JITTER_SECONDS`; at least `1`, or `0` = never"""
    worker_timeout_seconds: int = Field(30, ge=1, le=DAY_SECONDS)
    """gunicorn heartbeat timeout (heartbeats do not wait for inference)"""
    keepalive_seconds: int = Field(5, ge=0, le=DAY_SECONDS)
    """HTTP keep-alive idle timeout"""
    max_connection_age_seconds: float = Field(30.0, ge=0, le=DAY_SECONDS)
    """a keep-alive connection this old gets `Connection: close` on its next response, so busy clients reconnect and
    kube-proxy (which balances connections, not requests) spreads them over the pods the HPA adds; `0` = never"""
    max_requests: int = Field(0, ge=0)
    """recycle a worker after this many requests; `0` = never. The worker stops accepting and still answers what it
    admitted, for up to `GRACEFUL_SHUTDOWN_SECONDS`; gunicorn starts its successor only once it has exited, so keep
    `WORKERS` at 2 or more and set `MAX_REQUESTS_JITTER`, or the pod's port only queues connections meanwhile"""
    max_requests_jitter: int = Field(0, ge=0)
    """random spread added to `MAX_REQUESTS`"""

    prometheus_multiproc_dir: str = Field("/tmp/inferscale-metrics", pattern=r"^/")
    """directory the workers share their metrics through, an absolute path, of its own: its metric files are removed
    at start, and one holding other `.db` files is refused"""
    log_level: str = Field("info", pattern=r"^(debug|info|warning|error|critical)$")
    """`debug`, `info`, `warning`, `error` or `critical`"""
    access_log: bool = True
    """a line per request on stdout (Apache combined format, then the seconds taken); `false` turns it off, which
    at thousands of requests a second takes 7–10 % off the HTTP workers' CPU. Whatever `LOG_LEVEL` says"""

    @field_validator("inference_mode", mode="before")
    @classmethod
    def _trim_choice(cls, value: object) -> object:
        # str_strip_whitespace trims text fields only, not an Enum's.
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.inference_jitter_seconds > self.inference_duration_seconds:
            raise ValueError(
                f"INFERENCE_JITTER_SECONDS ({self.inference_jitter_seconds:g}) must not exceed "
                f"INFERENCE_DURATION_SECONDS ({self.inference_duration_seconds:g})"
            )
        if 0 < self.model_watchdog_seconds < 1:
            raise ValueError(f"MODEL_WATCHDOG_SECONDS ({self.model_watchdog_seconds:g}) must be 0 (off) or at least 1")
        if 0 < self.inference_timeout_seconds < 1:
            raise ValueError(
                f"INFERENCE_TIMEOUT_SECONDS ({self.inference_timeout_seconds:g}) must be 0 (off) or at least 1"
            )
        # Summed as decimals, as the chart's check (Sprig's addf) sums them: 2.2 + 1.1 is 3.3.
        longest = _decimal(self.inference_duration_seconds) + _decimal(self.inference_jitter_seconds)
        if 0 < self.inference_timeout_seconds and _decimal(self.inference_timeout_seconds) <= longest:
            raise ValueError(
                f"INFERENCE_TIMEOUT_SECONDS ({self.inference_timeout_seconds:g}) must exceed "
                f"INFERENCE_DURATION_SECONDS + INFERENCE_JITTER_SECONDS ({float(longest):g}), "
                "or inferences that run as configured time out"
            )
        if self.admin_port == self.port:
            raise ValueError(f"ADMIN_PORT ({self.admin_port}) must differ from PORT ({self.port})")
        if self.max_batch_size * self.max_features * 8 > MAX_ROWS_BYTES:
            raise ValueError(
                f"MAX_BATCH_SIZE x MAX_FEATURES ({self.max_batch_size} x {self.max_features}) float64 values "
                "are over the 2 GiB one request can carry to the model process"
            )
        return self

    @property
    def retry_after(self) -> int:
        return self.retry_after_seconds or max(1, math.ceil(self.inference_duration_seconds))


def describe(error: ValidationError, flags: dict[str, str] | None = None) -> list[str]:
    """One line per problem, naming the variable as users set it (or the
    `flags` option that set it) with the value it had; pydantic's own text
    names the field and links to its docs."""
    lines, flags = [], flags or {}
    for problem in error.errors(include_url=False):
        # A check of ours: its own message, without pydantic's "Value error, ".
        message = str(problem["ctx"]["error"]) if problem["type"] == "value_error" else problem["msg"]
        if not problem["loc"]:  # a rule across settings: its message names them
            set_by = [
                f"{variable} from {flag}" for variable, flag in flags.items() if re.search(rf"\b{variable}\b", message)
            ]
            lines.append(f"{message} ({', '.join(set_by)})" if set_by else message)
            continue
        variable = str(problem["loc"][0]).upper()
        source = f"{variable} ({flags[variable]})" if variable in flags else variable
        lines.append(f"{source}={problem['input']!r}: {message}")
    return lines


def _decimal(value: float) -> Decimal:
    """The number as written (repr is the shortest that reads back the same)."""
    return Decimal(repr(value))


def reference_table() -> str:
    """Every setting as a Markdown table row: its variable, default and
    meaning. docs/settings.md holds what `inferscale settings` prints."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = getattr(field.default, "value", field.default)
        if isinstance(default, bool):
            default = str(default).lower()  # as the environment spells it
        elif isinstance(default, float) and default.is_integer():
            default = int(default)
        # A docstring's lines joined: a table row is one line.
        meaning = " ".join((field.description or "").split())
        rows.append(f"| `{name.upper()}` | `{default}` | {meaning} |")
    return "\n".join(rows) + "\n"
