"""gunicorn's settings and hooks for the pod's two gunicorn instances, derived from `Settings`.

The main one serves every route on PORT with WORKERS workers. The admin one
serves /health, /ready and /metrics on ADMIN_PORT with one worker of its own:
a probe or a scrape then never waits behind inference traffic, which can keep
every main worker's CPU busy, and a flood of slow clients on PORT cannot
touch it.
"""

from __future__ import annotations

import os
from typing import Any

from inferscale import multiprocess
from inferscale.settings import Settings

# gunicorn's own graceful stop comes after the model process has drained (see
# supervisor), so it only has to write the last answers and close idle
# keep-alive connections.
STOP_SECONDS = 5


def main_options(settings: Settings) -> dict[str, Any]:
    return {
        **_common(settings),
        "workers": settings.workers,
        "proc_name": "http-worker",
        "max_requests": settings.max_requests,
        "max_requests_jitter": settings.max_requests_jitter,
        "accesslog": "-" if settings.access_log else None,
        "logger_class": "inferscale.access_log.AccessLogger",
    }


def admin_options(settings: Settings) -> dict[str, Any]:
    # No access log: the kubelet probes every few seconds and Prometheus
    # scrapes every 15; their lines would drown the requests that matter.
    return {
        **_common(settings),
        "workers": 1,
        "proc_name": "admin-worker",
    }


def _common(settings: Settings) -> dict[str, Any]:
    return {
        # gevent: a connection that waits (for a slow client's bytes, or for a
        # model slot) costs a greenlet, not one of a few threads; see worker.py.
        "worker_class": "inferscale.worker.InferenceWorker",
        "worker_connections": settings.worker_connections,
        "timeout": settings.worker_timeout_seconds,
        "graceful_timeout": STOP_SECONDS,
        "keepalive": settings.keepalive_seconds,
        "loglevel": settings.log_level,
        "errorlog": "-",
        # gunicorn's admin socket lives under $HOME: a read-only root filesystem
        # has no room for it, and two servers on one machine would fight over it.
        "control_socket_disable": True,
        # Workers build the app after fork: each then has its own connection to
        # the model process and its own metric files.
        "preload_app": False,
        "child_exit": child_exit,
    }


def child_exit(server, worker) -> None:
    multiprocess.archive_dead_process(os.environ[multiprocess.ENV_VAR], worker.pid)
