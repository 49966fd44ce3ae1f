"""gunicorn configuration and hooks; `inferscale serve` loads it, and so can plain gunicorn:

    gunicorn -c python:inferscale.gunicorn_conf 'inferscale.app:create_app()'
"""

from __future__ import annotations

import math
import os
import signal
import threading

from inferscale.settings import Settings

_settings = Settings()
# prometheus_client picks single- or multi-process storage when it is first
# imported, so the directory must be in the environment before that import.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _settings.prometheus_multiproc_dir)

from inferscale import multiprocess  # noqa: E402
from inferscale.runtime import runtime_of  # noqa: E402

# Seconds gunicorn itself allows after SIGTERM beyond our own drain budget, for
# the worker to close its sockets and the master to reap it.
EXIT_MARGIN_SECONDS = 5

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers
worker_class = "gthread"
threads = _settings.worker_threads
# Heartbeats come from the worker's event loop, not from request threads, so a
# 10-second inference never trips this.
timeout = _settings.worker_timeout_seconds
graceful_timeout = math.ceil(_settings.graceful_shutdown_seconds) + EXIT_MARGIN_SECONDS
keepalive = _settings.keepalive_seconds
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter
loglevel = _settings.log_level
accesslog = "-"
errorlog = "-"
# gunicorn's admin socket lives under $HOME: a read-only root filesystem has no
# room for it, and two servers on one machine would fight over it.
control_socket_disable = True
# Each worker loads its own model after fork, in a background thread, so
# /health answers during the load; a preloaded app would load before anything
# listens, and its loader thread would not survive the fork.
preload_app = False


def on_starting(server):
    multiprocess.prepare_directory(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def child_exit(server, worker):
    multiprocess.archive_dead_process(os.environ["PROMETHEUS_MULTIPROC_DIR"], worker.pid)


def post_worker_init(worker):
    """Replace gunicorn's SIGTERM handling with drain-then-exit.

    gunicorn alone stops reading new requests at SIGTERM, so /ready could not
    answer 503. Here the worker keeps serving: /ready says draining, new work is
    refused with 503, admitted work finishes, and only then does gunicorn's own
    graceful exit begin.
    """
    service = runtime_of(worker.wsgi).service
    started = threading.Event()

    def drain_then_exit():
        drained = service.drain(_settings.graceful_shutdown_seconds)
        worker.log.info("worker %s drained=%s, exiting", worker.pid, drained)
        worker.handle_exit(signal.SIGTERM, None)

    def on_sigterm(signum, frame):
        if not started.is_set():
            started.set()
            threading.Thread(target=drain_then_exit, name="drain", daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
