"""`inferscale serve`: the first process of the pod, parent of the model process and of gunicorn.

    inferscale serve (this)         signals, restarts, shutdown order
    ├── model process               the model, every slot, the pod's queue
    └── gunicorn master
        └── HTTP workers (gevent)   parsing, validation, /metrics, probes

The model process is restarted when it dies (the HTTP workers answer its lost
requests with 503 and say "not ready" until the reload is done); gunicorn
dying ends the pod. On SIGTERM the model process drains first (its queue
finishes, new work gets 503, /ready says draining) and only then does
gunicorn stop, so every admitted request's answer is written. SIGINT and
SIGQUIT stop everything at once.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

from inferscale import gunicorn_conf, multiprocess
from inferscale.settings import Settings

log = logging.getLogger("inferscale.supervisor")

SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP}
# Restart delays of a model process that keeps dying: doubling from the first
# to the last, reset once it has lived STABLE_SECONDS.
FIRST_RESTART_SECONDS = 0.5
LAST_RESTART_SECONDS = 30.0
STABLE_SECONDS = 60.0
# Beyond each stage's own budget: time for a process to exit and be reaped.
EXIT_MARGIN_SECONDS = 5.0
PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1


def serve(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    multiprocess.prepare_directory(settings.prometheus_multiproc_dir)
    socket_dir = tempfile.mkdtemp(prefix="inferscale-")
    try:
        return Supervisor(settings, os.path.join(socket_dir, "model.sock")).run()
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


class Supervisor:
    def __init__(self, settings: Settings, socket_path: str):
        self.settings = settings
        self.socket_path = socket_path
        # Bound once and held here, so the path never disappears while a dead
        # model process is replaced: workers connecting meanwhile wait in the
        # backlog for the successor instead of failing.
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(socket_path)
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.model_pid = 0
        self.model_started = 0.0
        self.gunicorn_pid = 0
        self.restart_delay = FIRST_RESTART_SECONDS
        self.restart_at: float | None = None
        self.stopping = False

    def run(self) -> int:
        # Signals are taken synchronously (sigtimedwait), so none can arrive
        # between checking a child and waiting; children unblock them at fork.
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        set_process_name("inferscale")
        self.gunicorn_pid = _fork(self._run_gunicorn)
        self._start_model()
        while True:
            info = self._wait_for_signal()
            if info is None or info.si_signo == signal.SIGCHLD:
                if not self._reap_and_restart():
                    return self._stop(graceful=False, code=1)
            elif info.si_signo == signal.SIGTERM:
                return self._stop(graceful=True, code=0)
            elif info.si_signo == signal.SIGHUP:
                os.kill(self.gunicorn_pid, signal.SIGHUP)  # gunicorn's own reload of its workers
            else:
                return self._stop(graceful=False, code=0)

    def _run_gunicorn(self) -> int:
        from inferscale.server import GunicornServer

        self.listener.close()  # only model processes accept on it
        set_process_name("gunicorn")
        GunicornServer(self.settings, self.socket_path).run()
        return 0

    def _run_model(self) -> int:
        from inferscale import model_process

        set_process_name("model-process")
        return model_process.run(self.settings, self.listener)

    def _start_model(self) -> None:
        self.model_pid = _fork(self._run_model)
        self.model_started = time.monotonic()
        self.restart_at = None
        log.info("model process %d started", self.model_pid)

    def _wait_for_signal(self) -> signal.struct_siginfo | None:
        """The next signal, or None when a model restart falls due first."""
        if self.restart_at is None:
            return signal.sigwaitinfo(SIGNALS)
        return signal.sigtimedwait(SIGNALS, max(0.0, self.restart_at - time.monotonic()))

    def _reap_and_restart(self) -> bool:
        """Reap every exited child; False once gunicorn is gone (the pod can't serve)."""
        for pid, status in self._reap():
            if pid == self.gunicorn_pid:
                log.error("gunicorn exited (%s); stopping", _describe(status))
                return False
        if self.restart_at is not None and time.monotonic() >= self.restart_at:
            self._start_model()
        return True

    def _reap(self) -> list[tuple[int, int]]:
        """Reap every exited child, including orphans reparented to us when we are PID 1."""
        exited = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not pid:
                break
            exited.append((pid, status))
            if pid == self.model_pid:
                self._model_exited(status)
            elif pid == self.gunicorn_pid:
                self.gunicorn_pid = 0
        return exited

    def _model_exited(self, status: int) -> None:
        _forget_process_metrics(self.settings.prometheus_multiproc_dir, self.model_pid)
        lived = time.monotonic() - self.model_started
        self.restart_delay = (
            FIRST_RESTART_SECONDS
            if lived >= STABLE_SECONDS
            else min(LAST_RESTART_SECONDS, self.restart_delay * 2)
        )
        if not self.stopping:
            log.error(
                "model process %d %s after %.0f s; restarting in %.1f s",
                self.model_pid, _describe(status), lived, self.restart_delay,
            )
            self.restart_at = time.monotonic() + self.restart_delay
        self.model_pid = 0

    def _stop(self, graceful: bool, code: int) -> int:
        """Model first (drained when graceful), then gunicorn; each within its budget."""
        self.stopping = True
        drain = self.settings.graceful_shutdown_seconds if graceful else 0.0
        self._stop_child("model", drain, signal.SIGTERM if graceful else signal.SIGINT)
        self._stop_child("gunicorn", gunicorn_conf.STOP_SECONDS, signal.SIGTERM if graceful else signal.SIGQUIT)
        return code

    def _stop_child(self, name: str, budget: float, signum: int) -> None:
        pid = getattr(self, f"{name}_pid")
        if not pid:
            return
        os.kill(pid, signum)
        deadline = time.monotonic() + budget + EXIT_MARGIN_SECONDS
        while getattr(self, f"{name}_pid") == pid:
            if time.monotonic() >= deadline:
                log.error("%s process %d did not stop in time; killing it", name, pid)
                os.kill(pid, signal.SIGKILL)
            signal.sigtimedwait({signal.SIGCHLD}, 0.5)
            self._reap()


def _fork(target: Callable[[], int]) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _die_with(parent)
        code = target()
    except SystemExit as error:
        code = error.code if isinstance(error.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def set_process_name(name: str) -> None:
    """The name `ps` and `top` show (15 bytes at most): every process of the pod looks
    alike otherwise, all forked from one `inferscale serve`."""
    _prctl(PR_SET_NAME, name.encode()[:15])


def _die_with(parent: int) -> None:
    """Outside a container (no PID namespace ends them), children must not outlive us."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # the parent died before the line above took effect


def _prctl(option: int, value) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value)
    except (OSError, AttributeError):
        pass  # not Linux: names stay as they are, children may outlive a killed supervisor


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _forget_process_metrics(directory: str, pid: int) -> None:
    """Fold the dead process's counters into the archive, and read the model as not ready."""
    from inferscale.metrics import model_ready_gauge

    multiprocess.archive_dead_process(directory, pid)
    model_ready_gauge(registry=None).set(0)
