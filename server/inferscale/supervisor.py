"""`inferscale serve`: the first process of the pod, parent of the model process and of gunicorn.

    inferscale serve (this)      signals, restarts, shutdown order
    ├── model-process            the model, every slot, the pod's queue
    ├── gunicorn                 PORT: every route
    │   └── http-worker × WORKERS   (gevent) parse, validate, forward to the model process
    └── gunicorn-admin           ADMIN_PORT: /health, /ready, /metrics
        └── admin-worker

The model process is restarted when it dies, when it ends itself to free a
slot stuck past INFERENCE_TIMEOUT_SECONDS, or after being killed when its
heartbeat has stopped for MODEL_WATCHDOG_SECONDS (the HTTP workers answer its
lost requests with 503 and say "not ready" until the reload is done); a gunicorn
dying ends the pod: the main one at once (no one is left to answer the
queue), the admin one after a drain. On SIGTERM the model process drains
first (its queue finishes, new work gets 503, /ready says draining), then the
main gunicorn stops once every admitted request's answer is written, and the
admin one last. SIGINT and SIGQUIT stop everything at once, a drain under
way too.

Each child leads a process group of its own: a SIGTERM to the whole group
(`kill -TERM -PGID`, a process manager that signals groups) reaches this
process alone, which stops the children in that order, instead of each on
its own clock. systemd signals the whole cgroup instead: run it with
`KillMode=mixed`. Ctrl-Z in a terminal stops this process alone, too.

Every child is forked from this process after the heavy imports (see
`_import_shared`), so the pages holding the interpreter's modules are shared
by all of them instead of copied into each.
"""

from __future__ import annotations

import ctypes
import enum
import gc
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

from inferscale import gunicorn_conf, model_process, multiprocess
from inferscale.heartbeat import Heartbeat, interval_for
from inferscale.metrics import DIED, TIMED_OUT, WEDGED, model_ready_gauge, model_restarts_counter
from inferscale.settings import Settings

log = logging.getLogger("inferscale.supervisor")


class Lost(enum.Enum):
    """A gunicorn gone: the pod can't serve. Without the admin port the queue
    can still be drained; without the main port nobody would answer it."""

    MAIN = "gunicorn"
    ADMIN = "gunicorn-admin"


# SIGALRM is the timer of a due model restart or watchdog check. sigtimedwait's
# own timeout is not used: when a stop and continue (SIGSTOP, a cgroup freezer)
# interrupt it past its deadline, CPython 3.11 returns an unfilled siginfo,
# random numbers, instead of None.
SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGALRM}
# Restart delays of a model process that keeps dying: doubling from the first
# to the last, reset once it has lived STABLE_SECONDS.
FIRST_RESTART_SECONDS = 0.5
LAST_RESTART_SECONDS = 30.0
STABLE_SECONDS = 60.0
# Beyond each stage's own budget: time for a process to exit and be reaped.
EXIT_MARGIN_SECONDS = 5.0
# Nice levels of the request path (HTTP workers, model process) below the admin
# worker. Under saturation a scrape's median took 3.4-3.7 ms at 5 and 2.9-3.2 ms
# at 10, with the same throughput (`make bench-scrape-priority`).
REQUEST_PATH_NICENESS = 10
# A stale heartbeat is looked at again this many beats later, by the
# supervisor's own clock, before the kill: when the whole pod resumes from a
# pause (SIGSTOP to all, a cgroup freezer) the supervisor may look before the model
# process has had its turn to beat.
CONFIRM_BEATS = 2
# Each child's stop signal: [at once, graceful].
STOP_SIGNALS = {
    "model": (signal.SIGINT, signal.SIGTERM),
    "gunicorn": (signal.SIGQUIT, signal.SIGTERM),
    "admin": (signal.SIGQUIT, signal.SIGTERM),
}
PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1


def serve(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        multiprocess.prepare_directory(settings.prometheus_multiproc_dir)
    except OSError as error:
        raise CannotStart(f"PROMETHEUS_MULTIPROC_DIR={settings.prometheus_multiproc_dir}: {_reason(error)}") from None
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
        # The HTTP ports too, before any child exists: gunicorn's master binds
        # only once forked, and the admin port can already say ready by then.
        # A connection to PORT now waits in its backlog for a worker instead
        # of being refused. Each gunicorn takes its socket as fd://N.
        self.http_listeners = {
            False: _listen(settings.host, settings.port, "PORT"),
            True: _listen(settings.host, settings.admin_port, "ADMIN_PORT"),
        }
        self.model_pid = 0
        self.model_started = 0.0
        self.heartbeat = Heartbeat()
        self.beat_interval = interval_for(settings.model_watchdog_seconds)
        # The model process the watchdog killed, until it is reaped.
        self.wedged_pid = 0
        # A stale stamp seen once, and when to look at it again.
        self.suspect_stamp = 0.0
        self.suspect_until = 0.0
        self.gunicorn_pid = 0
        self.admin_pid = 0
        self.restart_delay = FIRST_RESTART_SECONDS
        self.restarts = model_restarts_counter()
        self.restart_at: float | None = None
        self.stopping = False
        self.graceful = True

    def run(self) -> int:
        # Signals are taken synchronously (sigwaitinfo), so none can arrive
        # between checking a child and waiting; children unblock them at fork.
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        set_process_name("inferscale")
        _import_shared()
        self.gunicorn_pid = _fork(lambda: self._run_gunicorn(admin=False))
        self.admin_pid = _fork(lambda: self._run_gunicorn(admin=True))
        # Each gunicorn holds its port now. Held here too, a port would take
        # connections into its backlog after its gunicorn stopped, to be reset
        # only when the pod exits; closed, they are refused at once.
        for http_listener in self.http_listeners.values():
            http_listener.close()
        self._start_model()
        while True:
            info = self._wait_for_signal()
            if info.si_signo in (signal.SIGCHLD, signal.SIGALRM):
                lost = self._reap_and_restart()
                if lost is not None:
                    return self._stop(graceful=lost is Lost.ADMIN, code=1)
                self._kill_if_wedged()
            elif info.si_signo == signal.SIGTERM:
                return self._stop(graceful=True, code=0)
            elif info.si_signo == signal.SIGHUP:
                # gunicorn's own reload of its workers
                os.kill(self.gunicorn_pid, signal.SIGHUP)
                os.kill(self.admin_pid, signal.SIGHUP)
            else:
                return self._stop(graceful=False, code=0)

    def _run_gunicorn(self, admin: bool) -> int:
        from inferscale.gunicorn_app import GunicornServer

        self.listener.close()  # only model processes accept on it
        self.heartbeat.close()
        self.http_listeners[not admin].close()
        set_process_name("gunicorn-admin" if admin else "gunicorn")
        GunicornServer(self.settings, self.socket_path, self.http_listeners[admin].fileno(), admin).run()
        return 0

    def _run_model(self) -> int:
        set_process_name("model-process")
        yield_to_probes()
        if self.settings.model_watchdog_seconds:
            self.heartbeat.keep_beating(self.beat_interval)
        return model_process.run(self.settings, self.listener)

    def _start_model(self) -> None:
        self.heartbeat.beat()  # the new process's silence counts from its start
        self.model_pid = _fork(self._run_model)
        self.model_started = time.monotonic()
        self.restart_at = None
        log.info("model process %d started", self.model_pid)

    def _wait_for_signal(self) -> signal.struct_siginfo:
        """The next signal; SIGALRM when a model restart or the watchdog's check falls due first."""
        due = [at for at in (self.restart_at, self._watchdog_due(self.heartbeat.last())) if at is not None]
        # Re-armed on every wait (0 disarms); one already due fires at once.
        signal.setitimer(signal.ITIMER_REAL, max(1e-6, min(due) - time.monotonic()) if due else 0)
        return signal.sigwaitinfo(SIGNALS)

    def _watchdog_due(self, stamp: float) -> float | None:
        """When the watchdog looks next, given the heartbeat's last `stamp`."""
        if not self.model_pid or not self.settings.model_watchdog_seconds:
            return None
        if stamp == self.suspect_stamp:
            return self.suspect_until
        return stamp + self.settings.model_watchdog_seconds

    def _kill_if_wedged(self) -> None:
        """A model process that is alive but no longer runs holds its requests
        forever while /ready says 200: killed, it is restarted like a crash."""
        stamp = self.heartbeat.last()
        due = self._watchdog_due(stamp)
        now = time.monotonic()
        if due is None or now < due:
            return
        if stamp != self.suspect_stamp:
            self.suspect_stamp, self.suspect_until = stamp, now + CONFIRM_BEATS * self.beat_interval
            log.warning(
                "model process %d has not run for %.1f s; killing it unless it runs in the next %.1f s",
                self.model_pid,
                now - stamp,
                self.suspect_until - now,
            )
            return
        log.error(
            "model process %d has not run for %.0f s (MODEL_WATCHDOG_SECONDS=%g); killing it",
            self.model_pid,
            now - stamp,
            self.settings.model_watchdog_seconds,
        )
        os.kill(self.model_pid, signal.SIGKILL)
        self.wedged_pid = self.model_pid
        # Looked at again, and killed again, should it still be there then:
        # a process in uninterruptible sleep dies only once its call returns.
        self.suspect_until = now + self.settings.model_watchdog_seconds

    def _reap_and_restart(self) -> Lost | None:
        """Reap every exited child; a gunicorn that is gone, else None (a model process due is restarted)."""
        gunicorns = {self.gunicorn_pid: Lost.MAIN, self.admin_pid: Lost.ADMIN}
        gone = set()
        for pid, status in self._reap():
            if pid in gunicorns:
                log.error("%s exited (%s); stopping", gunicorns[pid].value, _describe(status))
                gone.add(gunicorns[pid])
        if gone:
            # Both at once: the main port's loss decides (no drain, nobody would answer it).
            return Lost.MAIN if Lost.MAIN in gone else Lost.ADMIN
        if self.restart_at is not None and time.monotonic() >= self.restart_at:
            self._start_model()
        return None

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
            elif pid == self.admin_pid:
                self.admin_pid = 0
        return exited

    def _model_exited(self, status: int) -> None:
        _forget_process_metrics(self.settings.prometheus_multiproc_dir, self.model_pid)
        lived = time.monotonic() - self.model_started
        self.restart_delay = (
            FIRST_RESTART_SECONDS if lived >= STABLE_SECONDS else min(LAST_RESTART_SECONDS, self.restart_delay * 2)
        )
        if not self.stopping:
            reason = _restart_reason(status, killed_as_wedged=self.model_pid == self.wedged_pid)
            self.restarts.labels(reason=reason).inc()
            log.error(
                "model process %d %s (%s) after %.0f s; restarting in %.1f s",
                self.model_pid,
                _describe(status),
                reason,
                lived,
                self.restart_delay,
            )
            self.restart_at = time.monotonic() + self.restart_delay
        self.model_pid = self.wedged_pid = 0

    def _stop(self, graceful: bool, code: int) -> int:
        """Model first (drained when graceful), then the main gunicorn, then the admin one:
        /ready answers 503 until the very end ("draining", then "model_unreachable"
        once the drained model process has exited)."""
        self.stopping = True
        self.graceful = graceful
        for name in ("model", "gunicorn", "admin"):
            self._stop_child(name)
        return code

    def _stop_child(self, name: str) -> None:
        pid = getattr(self, f"{name}_pid")
        if not pid:
            return
        os.kill(pid, STOP_SIGNALS[name][self.graceful])
        deadline = time.monotonic() + self._stop_budget(name)
        while getattr(self, f"{name}_pid") == pid:
            if time.monotonic() >= deadline:
                log.error("%s process %d did not stop in time; killing it", name, pid)
                os.kill(pid, signal.SIGKILL)
            if self.graceful and self._told_to_hurry():
                self.graceful = False
                os.kill(pid, STOP_SIGNALS[name][False])
                deadline = min(deadline, time.monotonic() + self._stop_budget(name))
            signal.sigtimedwait({signal.SIGCHLD}, 0.5)
            self._reap()

    def _stop_budget(self, name: str) -> float:
        """How long a child may take to stop, after its stop signal."""
        if name == "model":
            return (self.settings.graceful_shutdown_seconds if self.graceful else 0.0) + EXIT_MARGIN_SECONDS
        return gunicorn_conf.STOP_SECONDS + EXIT_MARGIN_SECONDS

    def _told_to_hurry(self) -> bool:
        """SIGINT or SIGQUIT came during a graceful stop: stop at once. Taken
        from the pending set, not from sigtimedwait's answer, which a stop and
        continue can fill with random numbers (see SIGNALS)."""
        hurry = signal.sigpending() & {signal.SIGINT, signal.SIGQUIT}
        if not hurry:
            return False
        signal.sigwaitinfo(hurry)
        log.warning("%s during the graceful stop: stopping at once", signal.Signals(min(hurry)).name)
        return True


def _import_shared() -> None:
    """Import what every child needs before forking any, so they share those pages.

    gc.freeze: the collector would otherwise write to every imported object's
    header in each child, copying the pages the fork shared, and would spend
    milliseconds scanning them in the middle of a scrape.
    """
    import inferscale.app  # noqa: F401  flask, numpy, pydantic, prometheus_client
    import inferscale.model_client  # noqa: F401  msgpack
    import inferscale.worker  # noqa: F401  gunicorn, gevent (not patched: workers patch)

    gc.collect()
    gc.freeze()


class CannotStart(Exception):
    """A setting this machine cannot honour: a port taken, a host that does not resolve, a directory not writable."""


def _listen(host: str, port: int, setting: str) -> socket.socket:
    try:
        # The address's own family: HOST may be an IPv6 address (`::` on an IPv6-only cluster).
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        raise CannotStart(f"cannot listen on HOST={host} {setting}={port}: {_reason(error)}") from None
    listener.set_inheritable(True)
    return listener


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _fork(target: Callable[[], int]) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setpgid(0, 0)  # see the module's docstring
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


def yield_to_probes() -> None:
    """Lower this process's CPU priority below the admin worker's.

    Under saturation the HTTP workers and the model process keep both cores
    busy; at equal priority a probe or a scrape then waits for its turn, tens
    of milliseconds. Below it, the admin worker gets the CPU as soon as it
    needs it: each nice level divides a process's CPU weight by about 1.25
    (the kernel's table: 1024 at 0, 335 at 5, 110 at 10). A process may always
    lower its own priority, so this needs no capability, and it only weighs
    against the pod's own processes (the pod's cgroup weighs it against the
    rest of the node).
    """
    os.nice(REQUEST_PATH_NICENESS)


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


def _restart_reason(status: int, killed_as_wedged: bool) -> str:
    if killed_as_wedged:
        return WEDGED
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == model_process.TIMED_OUT_EXIT_CODE:
        return TIMED_OUT
    return DIED


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _forget_process_metrics(directory: str, pid: int) -> None:
    """Fold the dead process's counters into the archive, and read the model as not ready."""
    multiprocess.archive_dead_process(directory, pid)
    model_ready_gauge(registry=None).set(0)
