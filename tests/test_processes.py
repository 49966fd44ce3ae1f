"""ManagedProcess: what the harness starts is stopped, whoever ends it, and
dies with its owner when the owner is SIGKILLed (processes.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from localcluster import ManagedProcess, wait_until
from localcluster.processes import session_members


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:  # gone meanwhile
        return []


def test_stop_kills_children_that_ignore_sigterm(tmp_path):
    # The shell exits on SIGTERM; its background child ignores it and would live on.
    # Its trap is set before the child starts, and the child's `sleep 300` runs
    # only once the child ignores TERM: both are in place once that sleep runs.
    script = "trap 'exit 0' TERM; (trap '' TERM; sleep 300) & while true; do sleep 0.1; done"
    process = ManagedProcess("sh", ["sh", "-c", script], tmp_path / "sh.log").start()
    wait_until(
        lambda: any(command_line(pid) == ["sleep", "300"] for pid in session_members(process.session)),
        "the child ignoring TERM",
        5,
    )
    assert process.stop(timeout=1) == 0
    assert session_members(process.session) == []


def test_sigkilled_owner_takes_its_processes_with_it(tmp_path):
    owner_code = (
        "import sys, time;"
        "from localcluster import ManagedProcess;"
        "p = ManagedProcess('sleep', ['sleep', '300'], sys.argv[1]).start();"
        "print(p.session, flush=True); time.sleep(300)"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", owner_code, str(tmp_path / "log")], stdout=subprocess.PIPE, text=True
    )
    try:
        session = int(owner.stdout.readline())
        assert session_members(session)
        owner.kill()
        wait_until(lambda: not session_members(session), "the owner's processes gone", 5)
    finally:
        owner.kill()
        owner.wait()
