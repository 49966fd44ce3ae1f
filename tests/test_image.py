"""The image users build from the Dockerfile, built for real and run as the chart runs it.

ci/build_image.sh builds (or reuses) the image with buildah and writes the
docker archive that `ctr images import` takes. These tests read the image's
config from that archive, then unpack it (skopeo, umoci) and run it with runc
the way the chart's securityContext asks a kubelet to: uid 10001, read-only
root filesystem, no capabilities, no privilege escalation, in-memory volumes at
/tmp and the metrics directory, the chart's environment, in a network
namespace of the test's own. Everything started is removed afterwards and
checked gone. Needs root (as CI runs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.image

USER = 10001
NAME = f"inferscale-image-test-{os.getpid()}"
# Fast enough for a test; everything else is the chart's.
ENV_OVERRIDES = {"MODEL_LOAD_SECONDS": "0.5", "INFERENCE_DURATION_SECONDS": "0.1"}


def run(*cmd, timeout: float = 120) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def app_version() -> str:
    for line in (ROOT / "chart" / "Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.partition(":")[2].strip().strip('"')
    raise AssertionError("no appVersion in chart/Chart.yaml")


@pytest.fixture(scope="module")
def manifest(image_archive) -> dict:
    with tarfile.open(image_archive) as tar:
        [entry] = json.load(tar.extractfile("manifest.json"))
        entry["config"] = json.load(tar.extractfile(entry["Config"]))["config"]
        entry["size"] = sum(tar.getmember(layer).size for layer in entry["Layers"])
    return entry


def test_archive_is_tagged_as_the_chart_names_the_image(manifest, app_version):
    # The name the kubelet resolves the chart's `image: inferscale:X` to, and
    # the only one: `ctr images import` creates every name the archive holds.
    assert manifest["RepoTags"] == [f"docker.io/library/inferscale:{app_version}"]


def test_image_stays_small(manifest):
    # 241 MB when written: the Debian Python base 131 MB, numpy most of the rest.
    # A compiler, a pip cache or apt lists would show here first.
    assert manifest["size"] < 270e6, f"{manifest['size'] / 1e6:.0f} MB uncompressed"


def test_config_user_command_ports_and_metrics_dir(manifest, container):
    config = manifest["config"]
    assert config["User"] == f"{USER}:{USER}"
    assert config["Entrypoint"] + config["Cmd"] == container["command"] + container["args"] == ["inferscale", "serve"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert set(config["ExposedPorts"]) == {f"{ports['http']}/tcp", f"{ports['admin']}/tcp"} == {"8080/tcp", "8081/tcp"}
    env = dict(e.split("=", 1) for e in config["Env"])
    chart_env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["PROMETHEUS_MULTIPROC_DIR"] == chart_env["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/inferscale-metrics"


# ---- running it -------------------------------------------------------------------------


def bundle_config(bundle: Path, netns: Path, chart_env: dict[str, str], metrics_dir: str) -> None:
    """umoci's runtime config (the image's user, command, env and cwd) tightened as the chart does."""
    path = bundle / "config.json"
    spec = json.loads(path.read_text())
    process = spec["process"]
    process["terminal"] = False
    process["noNewPrivileges"] = True  # allowPrivilegeEscalation: false
    process["capabilities"] = {kind: [] for kind in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    env = dict(e.split("=", 1) for e in process["env"]) | chart_env | ENV_OVERRIDES
    process["env"] = [f"{k}={v}" for k, v in env.items()]
    spec["root"]["readonly"] = True
    # The chart's two emptyDirs (medium: Memory).
    for destination in ("/tmp", metrics_dir):
        spec["mounts"].append(
            {
                "destination": destination,
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=16m"],
            }
        )
    spec["linux"]["namespaces"] = [
        {"type": "network", "path": str(netns)} if ns["type"] == "network" else ns for ns in spec["linux"]["namespaces"]
    ]
    path.write_text(json.dumps(spec))


def http(netns: Path, method: str, port: int, path: str, body: dict | None = None) -> tuple[int, str]:
    """One request from inside the namespace, which only the container's loopback is in."""
    code = (
        "import sys, urllib.request, urllib.error\n"
        "method, url, body = sys.argv[1], sys.argv[2], sys.argv[3].encode() or None\n"
        "req = urllib.request.Request(url, data=body, method=method, headers={'Content-Type': 'application/json'})\n"
        "try:\n"
        "    with urllib.request.urlopen(req, timeout=10) as r: print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode())\n"
        "except OSError as e: print(0); print(e)\n"
    )
    out = run(
        "nsenter",
        f"--net={netns}",
        sys.executable,
        "-c",
        code,
        method,
        f"http://127.0.0.1:{port}{path}",
        json.dumps(body) if body is not None else "",
        timeout=30,
    )
    status, _, text = out.partition("\n")
    return int(status), text


def descendants(pid: int) -> list[int]:
    """pid and every process under it, as the host sees them (their uids and capabilities are the kernel's word)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def status_fields(pid: int) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


def container_cgroups() -> list[Path]:
    """runc's cgroups for the container, wherever the hierarchy placed them (under the caller's own, on v1)."""
    return list(Path("/sys/fs/cgroup").glob(f"**/{NAME}"))


def leftovers(tmp: Path) -> list[str]:
    """What is still there of a run whose files, namespace mount included, are all under tmp."""
    mountinfo = Path("/proc/self/mountinfo").read_text()
    found = [f"mount: {line}" for line in mountinfo.splitlines() if str(tmp) in line]
    if (tmp / "runc" / NAME).exists():
        found.append(f"runc state of {NAME}")
    found += [f"cgroup {p}" for p in container_cgroups()]
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "root").startswith(str(tmp)):
                found.append(f"process {entry.name} rooted in {tmp}")
        except OSError:
            continue
    return found


def test_runs_as_the_chart_runs_it(image_archive, app_version, container, tmp_path):
    chart_env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # Kept under tmp_path rather than /run/netns, which other tools on a node
    # machine create, share and remove.
    netns = tmp_path / "netns"
    runc = ["runc", "--root", str(tmp_path / "runc")]
    bundle, layout = tmp_path / "bundle", tmp_path / "oci"
    log_path = tmp_path / "container.log"
    started = False
    try:
        run("skopeo", "copy", "--quiet", f"docker-archive:{image_archive}", f"oci:{layout}:{app_version}")
        run("umoci", "unpack", "--image", f"{layout}:{app_version}", str(bundle), timeout=300)
        rootfs = bundle / "rootfs"
        leftovers_of_build = [
            p for p in ("wheels", "src", "root/.cache", "usr/bin/gcc", "usr/bin/cc") if (rootfs / p).exists()
        ]
        leftovers_of_build += [str(p) for p in (rootfs / "var/lib/apt/lists").glob("*_*")]
        assert leftovers_of_build == [], "build leftovers in the image"
        bundle_config(bundle, netns, chart_env, chart_env["PROMETHEUS_MULTIPROC_DIR"])
        netns.touch()
        run("unshare", f"--net={netns}", "true")
        run("nsenter", f"--net={netns}", "ip", "link", "set", "lo", "up")
        with open(log_path, "wb") as log:
            # Detached, with its output in a file: a pipe would stay open as long as the container runs.
            subprocess.run(
                runc + ["run", "--detach", "--bundle", str(bundle), NAME],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=60,
            )
        started = True
        pid = json.loads(run(*runc, "state", NAME))["pid"]
        assert container_cgroups(), "runc made no cgroup: the check that none is left would prove nothing"

        deadline = time.monotonic() + 60
        while (ready := http(netns, "GET", ports["admin"], "/ready"))[0] != 200:
            assert time.monotonic() < deadline, f"/ready: {ready}; log:\n{log_path.read_text()}"
            time.sleep(0.5)
        status, body = http(netns, "POST", ports["http"], "/predict", {"features": [0.5, 1.5, -2]})
        assert status == 200, body
        assert json.loads(body)["model"] == chart_env["MODEL_NAME"]

        processes = descendants(pid)
        # The first process, the model process, two gunicorns and their workers (docs/server.md).
        assert len(processes) >= 5, processes
        for p in processes:
            fields = status_fields(p)
            assert fields["Uid"].split() == [str(USER)] * 4 and fields["Gid"].split() == [str(USER)] * 4, (p, fields)
            for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(fields[cap], 16) == 0, (p, cap, fields[cap])
            assert fields["NoNewPrivs"] == "1", p
        root_mount = next(
            line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/"
        )
        assert "ro" in root_mount.split()[5].split(","), root_mount

        probe = (
            "import errno, sys\n"
            "for path in sys.argv[1:]:\n"
            "    try: open(path, 'w').close(); print(path, 'written')\n"
            "    except OSError as e: print(path, errno.errorcode[e.errno])\n"
        )
        written = run(*runc, "exec", NAME, "python3", "-c", probe, "/probe", "/usr/local/probe", "/tmp/probe")
        assert written.splitlines() == ["/probe EROFS", "/usr/local/probe EROFS", "/tmp/probe written"]
        assert run(*runc, "exec", NAME, "id", "-u").strip() == str(USER)

        run(*runc, "kill", NAME, "TERM")
        deadline = time.monotonic() + 30
        while json.loads(run(*runc, "state", NAME))["status"] != "stopped":
            assert time.monotonic() < deadline, "SIGTERM did not stop the container within 30 s"
            time.sleep(0.2)
    finally:
        if started:
            subprocess.run(runc + ["delete", "--force", NAME], capture_output=True, timeout=60)
        subprocess.run(["umount", str(netns)], capture_output=True, timeout=30)
        # A copy of the image each: pytest keeps the last runs' tmp_path.
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.rmtree(layout, ignore_errors=True)
    assert leftovers(tmp_path) == []
