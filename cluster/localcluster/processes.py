"""Local processes that never outlive the program that started them.

A `ManagedProcess` runs its command in a session of its own (so a Ctrl-C in
the terminal reaches only the launcher, which then stops things in order),
under a small watchdog: this file, run as a script. The watchdog

- forwards TERM, INT, HUP, QUIT, USR1 and USR2 to the command only, as a
  container runtime signals a container's PID 1 only: gunicorn's master then
  drains its own workers instead of every worker being told at once;
- SIGKILLs whatever is left in the session when the command exits, as a
  container's processes die with its PID 1;
- SIGKILLs the whole session when its parent dies, even by SIGKILL, when no
  cleanup code of the parent gets to run. It watches the parent process (a
  pidfd), not the thread that forked it, which PR_SET_PDEATHSIG would do.

`stop()` signals the command, waits, then SIGKILLs every process left in the
session, so children that never heard the signal go too. The session leader
is left unreaped until then, so its id cannot be reused by a stranger while
we are still killing by it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_PR_SET_PDEATHSIG = 1


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, session id) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself hold spaces or ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[3])


def session_members(session: int) -> list[int]:
    """Live (non-zombie) processes whose session id is `session`."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat and stat[1] == session and stat[0] != "Z":
                members.append(int(entry))
    return members


def kill_session(session: int, sig: int = signal.SIGKILL, spare: int | None = None) -> None:
    """Signal every process in a session; with SIGKILL, repeat until none is left
    (a member may fork while we kill)."""
    for _ in range(100):
        members = [pid for pid in session_members(session) if pid != spare]
        if not members:
            return
        for pid in members:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if sig != signal.SIGKILL:
            return
        time.sleep(0.01)


class ManagedProcess:
    """One command, its log file, and a stop that leaves nothing behind.

    `pid` is the command's own pid; the watchdog (when `die_with_parent`) is
    its parent and the session leader.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path | str,
        env: dict[str, str] | None = None,
        cwd: Path | str | None = None,
        stop_timeout: float = 10.0,
        die_with_parent: bool = True,
    ):
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.die_with_parent = die_with_parent
        self.returncode: int | None = None
        self._popen: subprocess.Popen | None = None
        self._pid: int | None = None
        self._pidfd: int | None = None

    def start(self) -> ManagedProcess:
        self.returncode = None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            log_file.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self.argv}\n".encode())
            log_file.flush()
            if self.die_with_parent:
                self._start_watched(log_file)
            else:
                self._popen = self._spawn(self.argv, log_file)
                self._pid = self._popen.pid
        self._pidfd = os.pidfd_open(self._leader.pid)
        return self

    def _spawn(self, argv: list[str], log_file, pass_fds=()) -> subprocess.Popen:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            pass_fds=pass_fds,
        )

    def _start_watched(self, log_file) -> None:
        # The watchdog reports the command's pid (or why it could not start) on a pipe.
        read_end, write_end = os.pipe()
        try:
            watchdog = [
                sys.executable,
                "-I",
                "-S",
                __file__,
                "--parent",
                str(os.getpid()),
                "--report-fd",
                str(write_end),
                "--",
                *self.argv,
            ]
            self._popen = self._spawn(watchdog, log_file, pass_fds=(write_end,))
            os.close(write_end)
            write_end = -1
            with os.fdopen(read_end, "r") as report:
                read_end = -1
                answer = report.read()
        finally:
            for fd in (read_end, write_end):
                if fd >= 0:
                    os.close(fd)
        if not answer.isdigit():
            self._popen.wait()
            raise OSError(f"{self.name}: cannot start {self.argv}: {answer or 'watchdog died'}")
        self._pid = int(answer)

    @property
    def _leader(self) -> subprocess.Popen:
        """The session leader (the watchdog, or the command itself), once started."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} not started")
        return self._popen

    @property
    def _leader_fd(self) -> int:
        """A pidfd of the session leader, once started."""
        if self._pidfd is None:
            raise RuntimeError(f"{self.name} not started")
        return self._pidfd

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def session(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def alive(self) -> bool:
        """True until the command has exited (does not reap, see module doc)."""
        if self._popen is None or self.returncode is not None:
            return False
        return os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def wait(self, timeout: float | None) -> bool:
        """Wait up to `timeout` s for the command to exit; True if it has."""
        if not self.alive:
            return True
        ready, _, _ = select.select([self._pidfd], [], [], timeout)
        return bool(ready) or not self.alive

    def signal(self, sig: int) -> None:
        """Send `sig` to the command (via the watchdog, which forwards it)."""
        if self.alive:
            os.kill(self._leader.pid, sig)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM the command, wait up to `timeout` s (default `stop_timeout`) for it
        and everything in its session, then SIGKILL what is left. Returns the exit code."""
        if self._popen is None:
            return None
        if self.returncode is None:
            deadline = time.monotonic() + (self.stop_timeout if timeout is None else timeout)
            self.signal(signal.SIGTERM)
            self.wait(max(0.0, deadline - time.monotonic()))
            self._wait_session_empty(deadline)
            kill_session(self._popen.pid)
            self.returncode = self._popen.wait()
            os.close(self._leader_fd)
            log.debug("%s stopped with %s", self.name, self.returncode)
        return self.returncode

    def restart(self) -> ManagedProcess:
        """Stop the command and start it again: same argv, same log (appended)."""
        self.stop()
        return self.start()

    def _wait_session_empty(self, deadline: float) -> None:
        while session_members(self._leader.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def wait_http_ok(self, url: str, timeout: float, **request_options) -> None:
        """Until `url` answers 200; fails early, with the log's tail, if the process exits."""
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                if requests.get(url, timeout=2, **request_options).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{url} did not answer 200 within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self._pid})"


def wait_until(check, what: str, timeout: float, process: ManagedProcess | None = None, interval: float = 0.1):
    """Poll `check()` until it returns a true value; fail early if `process` died."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and not process.alive:
            raise RuntimeError(f"{process.name} exited while waiting for {what}:\n{process.log_tail()}")
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 - anything means "not yet"
            last_error = error
        time.sleep(interval)
    tail = process.log_tail() if process else ""
    raise TimeoutError(f"{what} not within {timeout} s (last error: {last_error})\n{tail}")


@contextlib.contextmanager
def undone_on_failure(undo: Callable[[], None]) -> Iterator[None]:
    """Run `undo` if the block raises, Ctrl-C included, then re-raise: what a
    half-done start began is stopped, not left running."""
    try:
        yield
    except BaseException:
        undo()
        raise


class LockHeld(Exception):
    def __init__(self, holder: str):
        super().__init__(f"held by pid {holder}")
        self.holder = holder


def hold_lock(path: Path) -> int:
    """Lock `path` for this process, without waiting, and write its pid in it;
    `LockHeld` names the holder's. The kernel lets go when the process exits,
    SIGKILL included, so a killed owner never leaves it stuck."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode().strip() or "?"
        os.close(fd)
        raise LockHeld(holder) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


class ProcessGroup:
    """Processes started together and stopped in reverse order, also on error.

    (A set of ManagedProcess, not an OS process group: each process has its own session.)
    """

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []

    def start(self, process: ManagedProcess) -> ManagedProcess:
        # Registered before starting so that a half-started process is stopped too.
        self.processes.append(process)
        return process.start()

    def stop(self) -> None:
        errors: list[Exception] = []
        interrupt: KeyboardInterrupt | None = None
        while self.processes:
            process = self.processes[-1]
            try:
                if interrupt is None:
                    process.stop()
                else:  # no more waiting for anyone: SIGKILL at once
                    process.stop(timeout=0)
            except KeyboardInterrupt as pressed:
                # Ctrl-C again (or a TERM) while waiting for a process to exit:
                # it was told to stop but may still run, so it is stopped again
                # without waiting, and so are the rest; the interrupt goes on
                # once none is left.
                interrupt = pressed
                continue
            except Exception as error:  # keep stopping the others
                errors.append(error)
                log.exception("stopping %s failed", process.name)
            self.processes.pop()
        # A failure first: the caller must learn that something may be left running.
        if errors:
            raise errors[0]
        if interrupt is not None:
            raise interrupt

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


# --- the watchdog (this file run as a script) --------------------------------


def _die_with_watchdog() -> None:
    # Runs in the command's process between fork and exec. The watchdog is
    # single-threaded, so "parent thread" and "parent process" are the same here.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _watchdog(parent: int, report_fd: int, argv: list[str]) -> int:
    session = os.getsid(0)
    child: subprocess.Popen | None = None
    pending: list[int] = []

    def forward(sig, _frame):
        if child is None:
            pending.append(sig)
            return
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:  # exited; _supervise is about to notice
            pass

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    with os.fdopen(report_fd, "w") as report:
        try:
            child = subprocess.Popen(argv, preexec_fn=_die_with_watchdog)
        except OSError as error:
            report.write(str(error))
            return 127
        report.write(str(child.pid))
    for early in pending:
        os.kill(child.pid, early)
    return _supervise(parent, child, session)


def _supervise(parent: int, child: subprocess.Popen, session: int) -> int:
    try:
        parent_fd = os.pidfd_open(parent)
    except ProcessLookupError:
        parent_fd = None
    if parent_fd is None or os.getppid() != parent:  # died before we could watch it
        kill_session(session, spare=os.getpid())
        return 137
    child_fd = os.pidfd_open(child.pid)
    ready, _, _ = select.select([parent_fd, child_fd], [], [])
    if child_fd not in ready:
        kill_session(session, spare=os.getpid())
        return 137
    code = child.wait()
    kill_session(session, spare=os.getpid())
    return code if code >= 0 else 128 - code


def _main() -> int:
    parser = argparse.ArgumentParser(description="run a command; take its session down with it or its parent")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--report-fd", type=int, required=True)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    return _watchdog(args.parent, args.report_fd, argv)


if __name__ == "__main__":
    sys.exit(_main())
