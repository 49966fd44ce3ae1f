"""`make demo` brings the loop up, says where to look, and Ctrl-C leaves nothing running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from localcluster.binaries import binary
from localcluster.node import HOST_IF, NODE_IP
from localcluster.processes import wait_until
from localcluster.servers import free_port

REPO = Path(__file__).resolve().parent.parent


def processes_referring_to(text: str) -> list[str]:
    """Every live process whose command line, working directory or environment mentions `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            places = [cmdline, os.readlink(entry / "cwd"), (entry / "environ").read_bytes().decode(errors="replace")]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if any(text in place for place in places):
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def read_until(process: subprocess.Popen, marker: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    os.set_blocking(process.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line:
            seen.append(line)
            if line.strip() == marker:
                return "".join(seen)
        elif process.poll() is not None:
            break
        else:
            time.sleep(0.2)
    raise AssertionError(f"no {marker!r} line within {timeout} s:\n{''.join(seen)}")


def test_make_demo_without_root_says_so_first_and_installs_nothing():
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "make", "-s", "demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert (
        result.stderr.splitlines()[0]
        == "make demo runs a real node (containerd, the kubelet, iptables): run it as root"
    )
    assert result.stdout == ""


@pytest.mark.cluster
def test_demo_prints_where_to_look_and_ctrl_c_leaves_no_process(tmp_path):
    workdir = tmp_path / "demo"
    locust_port = free_port()
    # Not the default: the flag is what puts Prometheus there.
    prometheus = f"http://{NODE_IP}:30091"
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localcluster",
            "demo",
            "--fast",
            "--workdir",
            str(workdir),
            "--locust-port",
            str(locust_port),
            "--prometheus-node-port",
            "30091",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As `make demo &` from a script starts it: Ctrl-C must still stop it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        cwd=REPO,
        env={key: value for key, value in os.environ.items() if key != "LOAD_USER_RPS"},
    )
    try:
        banner = read_until(demo, "ready", 300)
        assert f"http://127.0.0.1:{locust_port}" in banner
        # --fast: one slot per pod and 1 s inferences, so a pod's worth is 1 request/s.
        assert "each user sends 1 requests/s, one pod's worth (LOAD_USER_RPS)" in banner
        assert f"Prometheus UI:         {prometheus} " in banner
        assert "get hpa -n inferscale -w" in banner
        # Not printed before the HPA has a value to show.
        hpa = subprocess.run(
            [
                binary("kubectl"),
                "--kubeconfig",
                str(workdir / "control-plane/kubeconfigs/admin.kubeconfig"),
                "get",
                "hpa",
                "-n",
                "inferscale",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "<unknown>" not in hpa, hpa
        for url in (f"http://127.0.0.1:{locust_port}/", f"{prometheus}/query"):
            assert requests.get(url, timeout=10).status_code == 200, url
        # The banner's amtool command, as printed, lists the Watchdog that Prometheus sends.
        assert f"Alertmanager API:      http://{NODE_IP}:30093 " in banner
        [amtool] = [line.split() for line in banner.splitlines() if "--alertmanager.url=" in line]
        wait_until(
            lambda: "Watchdog" in subprocess.run(amtool, capture_output=True, text=True).stdout or None,
            "Watchdog in amtool's list",
            120,
            interval=2,
        )
        # The banner's doctor command, as printed, reads this cluster (the whole
        # walk is tests/test_doctor.py's; here the alerts may still be settling).
        doctor_command = re.search(r"^\s+(\S+ doctor .*)$", banner, re.M).group(1).split()
        doctor = subprocess.run(doctor_command, capture_output=True, text=True, timeout=120)
        assert doctor.returncode in (0, 1), doctor.stderr
        assert re.search(r"ok +pods ready +1 of 1 pods of Deployment inferscale ready", doctor.stdout), doctor.stdout
        service = re.search(r"service \(NodePort\): +(\S+)", banner).group(1)
        predict = requests.post(f"{service}/predict", json={"features": [1, 2]}, timeout=30)
        assert predict.status_code == 200, predict.text
        assert processes_referring_to(str(workdir)), "the check below would prove nothing"

        demo.send_signal(signal.SIGINT)
        assert demo.wait(180) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
    deadline = time.monotonic() + 10
    while processes_referring_to(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_referring_to(str(workdir)) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{locust_port}/", timeout=2)
    # The node's address went with its link: no connection to it is tried,
    # since this machine's default route would carry it off the machine.
    assert not Path(f"/sys/class/net/{HOST_IF}").exists()
