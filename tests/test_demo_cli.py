"""`python -m localcluster demo` and the node around the stack, without a
cluster: what the demo refuses before it starts anything, how a failure
reads, and teardowns that a second Ctrl-C cannot cut short. Every fixed path
of the node is moved under the test's directory (`sandboxed_node`): nothing
here may touch the machine's. The stack itself is tests/test_demo.py's."""

from __future__ import annotations

import ast
import fcntl
import importlib
import inspect
import os
import signal
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from localcluster import __main__ as demo_cli
from localcluster import node as node_module
from localcluster.kubectl import kubectl
from localcluster.node import NodeBusy, RealNode
from localcluster.processes import ManagedProcess, ProcessGroup, wait_until

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def signal_handlers():
    """run_demo sets this process's handlers; pytest's come back after."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)}
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    for sig, handler in saved.items():
        signal.signal(sig, handler)


class FakeStack:
    """Stands in for LocalStack: records each start, then runs `enter`."""

    def __init__(self) -> None:
        self.configs: list = []
        self.enter = lambda: None

    def __call__(self, config):
        self.configs.append(config)
        return self

    def __enter__(self):
        self.enter()
        raise AssertionError("the stand-in stack never comes up")

    def __exit__(self, *exc_info) -> None:
        pass


@pytest.fixture
def stack(tmp_path, monkeypatch) -> FakeStack:
    """run_demo as root on a cgroup v1 machine, with a stand-in stack."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    (tmp_path / "cgroup").mkdir()
    monkeypatch.setattr(node_module, "CGROUP_ROOT", tmp_path / "cgroup")
    fake = FakeStack()
    monkeypatch.setattr(demo_cli, "LocalStack", fake)
    return fake


def run_demo(workdir: Path) -> int:
    return demo_cli.main(["demo", "--workdir", str(workdir)])


def test_a_second_demo_refuses_and_leaves_the_running_ones_workdir(stack, tmp_path, capsys):
    workdir = tmp_path / "demo"
    kubeconfig = workdir / "control-plane" / "kubeconfigs" / "admin.kubeconfig"
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_text("the running demo's")
    running = os.open(tmp_path / "demo.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(running, fcntl.LOCK_EX)
        os.write(running, b"4242")
        assert run_demo(workdir) == 1
    finally:
        os.close(running)
    assert kubeconfig.read_text() == "the running demo's"
    assert stack.configs == []
    [line] = capsys.readouterr().err.splitlines()
    assert f"a demo is already running in {workdir} (pid 4242 " in line, line


def test_a_failure_is_one_line_and_its_traceback_a_file(stack, tmp_path, capsys):
    def helm_fails():
        raise RuntimeError("helm upgrade --install inferscale failed:\nError: context deadline exceeded")

    stack.enter = helm_fails
    workdir = tmp_path / "demo"
    assert run_demo(workdir) == 1
    report = workdir / "demo-failure.txt"
    assert capsys.readouterr().err.splitlines() == [
        f"demo failed: helm upgrade --install inferscale failed (details and traceback in {report}; "
        f"the processes' logs under {workdir})"
    ]
    assert "Traceback" in report.read_text() and "context deadline exceeded" in report.read_text()
    # The lock went with the demo: the next one may start.
    lock = os.open(tmp_path / "demo.lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(lock)


def test_a_cgroup_v2_machine_is_refused_before_anything_starts(stack, tmp_path, capsys):
    (node_module.CGROUP_ROOT / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    workdir = tmp_path / "demo"
    workdir.mkdir()
    (workdir / "kept").touch()
    assert run_demo(workdir) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "cgroup v2" in line and "cgroup v1 only" in line, line
    assert stack.configs == [] and (workdir / "kept").exists()


def test_a_closed_terminal_tears_down_as_ctrl_c_does(stack, tmp_path, capsys):
    def unhandled(signum, frame):  # what SIG_DFL would do, minus killing pytest
        raise AssertionError("SIGHUP would have killed the demo without its teardown")

    signal.signal(signal.SIGHUP, unhandled)
    stack.enter = lambda: signal.raise_signal(signal.SIGHUP)
    assert run_demo(tmp_path / "demo") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "stopped; everything the demo started has exited."


def test_nohup_keeps_the_demo_through_a_closed_terminal(stack, tmp_path):
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    seen = []
    stack.enter = lambda: seen.append(signal.getsignal(signal.SIGHUP))
    run_demo(tmp_path / "demo")
    assert seen == [signal.SIG_IGN]


def test_a_second_ctrl_c_while_processes_stop_kills_the_rest_then_goes_on(tmp_path):
    group = ProcessGroup()
    deaf = [
        group.start(
            ManagedProcess(
                f"deaf{i}",
                ["sh", "-c", "trap '' TERM; echo ready; exec sleep 600"],
                tmp_path / f"{i}.log",
                stop_timeout=60,
            )
        )
        for i in range(2)
    ]
    for process in deaf:
        wait_until(lambda p=process: "ready" in p.log_path.read_text().splitlines(), "TERM ignored", 10)

    def second_ctrl_c(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, second_ctrl_c)
    signal.setitimer(signal.ITIMER_REAL, 0.5)  # while the group waits 60 s for the first
    try:
        with pytest.raises(KeyboardInterrupt):
            group.stop()
        left = [process.name for process in deaf if process.alive]
    finally:
        for process in deaf:
            process.stop(0)
    assert left == [] and group.processes == []


@pytest.fixture
def sandboxed_node(tmp_path, monkeypatch) -> SimpleNamespace:
    """A RealNode whose fixed paths are under tmp_path and whose commands are only recorded."""
    root = tmp_path / "m"
    for name, path in {
        "LOCK_PATH": root / "node.lock",
        "STATE_PATH": root / "node.json",
        "NETNS": root / "netns" / "inferscale-node",
        "HOST_LINK": root / "net" / "inferscale0",
        "CONTAINERD_RUN_DIR": root / "run",
        "CONTAINERD_SOCKET": root / "run" / "c.sock",
        "NODE_DIR": root / "node",
        "CNI_CACHE": root / "cni",
        "CONTAINER_LOG_LINKS": root / "logs",
        "CGROUP_ROOT": root / "cgroup",
    }.items():
        monkeypatch.setattr(node_module, name, path)
    monkeypatch.setattr(node_module, "BRIDGE_SYSCTLS", root / "bridge")
    (root / "cgroup").mkdir(parents=True)
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(node_module, "run", lambda *argv, netns=False: calls.append(argv) or "")
    return SimpleNamespace(node=RealNode(None, tmp_path / "node"), calls=calls)


def test_a_second_ctrl_c_during_the_node_teardown_runs_every_step_then_goes_on(sandboxed_node, monkeypatch):
    node = sandboxed_node.node
    node._lock = os.open(node_module.LOCK_PATH, os.O_RDWR | os.O_CREAT)
    node_module.STATE_PATH.write_text("{}")
    steps: list[str] = []

    def step(name: str, interrupted: bool = False):
        def run(*args, **kwargs):
            steps.append(name)
            if interrupted and steps.count(name) == 1:
                raise KeyboardInterrupt

        return run

    node._kill_leftover_pods = step("pods", interrupted=True)
    node._unmount = step("unmount")
    node._remove_cgroups = step("cgroups")
    node._release_netns = step("netns")
    node._restore_sysctls = step("sysctls")
    monkeypatch.setattr(node_module, "_delete_host_link", step("link"))
    monkeypatch.setattr(node_module, "_remove_pod_files", step("pod files"))
    monkeypatch.setattr(node_module, "_remove_node_dirs", step("dirs"))
    with pytest.raises(KeyboardInterrupt):
        node.stop()
    assert steps == ["pods", "pods", "unmount", "cgroups", "netns", "link", "pod files", "dirs", "sysctls"]
    assert not node_module.STATE_PATH.exists() and node._lock is None


def test_a_foreign_containerd_is_named_with_the_command_that_stops_it(sandboxed_node, monkeypatch):
    monkeypatch.setattr(node_module, "EXITING_CONTAINERD_SECONDS", 0.2)
    node_module.CONTAINERD_RUN_DIR.mkdir()
    with socket.socket(socket.AF_UNIX) as foreign:
        foreign.bind(str(node_module.CONTAINERD_SOCKET))
        foreign.listen()
        with pytest.raises(NodeBusy) as refused:
            sandboxed_node.node.start()
    assert "containerd.service" in str(refused.value), refused.value
    assert "`systemctl disable --now containerd`" in str(refused.value), refused.value


@pytest.mark.parametrize("loaded", [False, True], ids=["module", "loaded"])
def test_the_node_loads_br_netfilter_unless_the_kernel_has(sandboxed_node, loaded):
    if loaded:
        node_module.BRIDGE_SYSCTLS.mkdir()
    sandboxed_node.node._create_network()
    calls = sandboxed_node.calls
    assert ("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1") in calls
    # First, before anything of the node's exists.
    assert [argv for argv in calls if argv[0] == "modprobe"] == ([] if loaded else [("modprobe", "br_netfilter")])
    assert loaded or calls[0][0] == "modprobe"


def test_kubectl_outlives_its_own_rollout_timeout():
    """The wrapper kills kubectl after its `timeout` (60 s unless told): a
    `--timeout` of kubectl's own must fit inside it, or a slow rollout ends in
    subprocess.TimeoutExpired instead of kubectl saying what it waited for."""
    default = inspect.signature(kubectl).parameters["timeout"].default
    checked = []
    for path in sorted((REPO / "cluster" / "localcluster").glob("*.py")):
        for call in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "kubectl"):
                continue
            flags = [
                arg
                for arg in call.args
                if isinstance(arg, ast.JoinedStr)
                and isinstance(arg.values[0], ast.Constant)
                and str(arg.values[0].value).startswith("--timeout=")
            ]
            if not flags:
                continue
            module = importlib.import_module(f"localcluster.{path.stem}")
            flag = evaluate(flags[0], module).removeprefix("--timeout=")
            assert flag.endswith("s") and flag[:-1].isdigit(), flag
            python = [evaluate(keyword.value, module) for keyword in call.keywords if keyword.arg == "timeout"]
            python = python or [default]
            assert python[0] > int(flag[:-1]), f"{path.name}:{call.lineno}"
            checked.append(f"{path.name}:{call.lineno}")
    assert len(checked) >= 2, checked


def evaluate(expression: ast.expr, module):
    """An argument as the call computes it (module constants only)."""
    return eval(compile(ast.Expression(expression), module.__file__, "eval"), vars(module))
