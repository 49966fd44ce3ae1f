"""ci/tools.sh as users run it: twice, with its own bin directory already on
PATH, as its output tells them to put it. Every link it makes to a program a
Debian package installed must point at that program, never at itself."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "ci" / "tools.sh"


def test_links_point_at_real_programs_whatever_path_holds(tmp_path):
    bin_dir = tmp_path / "bin"
    env = {**os.environ, "INFERSCALE_CACHE": str(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for _ in range(2):
        result = subprocess.run(
            ["bash", str(ROOT / "ci" / "tools.sh"), "wrk", "tcpdump"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        # The advice that puts the bin directory on PATH, which the second run already has.
        assert result.stdout.strip() == f'export PATH="{bin_dir}:$PATH"'
    links = sorted(bin_dir.iterdir())
    assert [link.name for link in links] == ["tcpdump", "wrk"]
    for link in links:
        target = link.resolve(strict=True)
        assert target.parent != bin_dir and target.is_file() and os.access(target, os.X_OK), (link, target)
    # wrk prints its version with its usage, and exits 1.
    assert "4.1.0" in subprocess.run([bin_dir / "wrk", "--version"], capture_output=True, text=True).stdout
    assert (
        "tcpdump version 4.99.3"
        in subprocess.run([bin_dir / "tcpdump", "--version"], capture_output=True, text=True).stdout
    )


def shell_function(name: str, **paths: str) -> str:
    """A function of ci/tools.sh, with the machine's paths in it replaced (`paths`: old=new)."""
    text = re.search(rf"^{name}\(\) \{{.*?^\}}", TOOLS.read_text(), re.S | re.M).group(0)
    for old, new in paths.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def run_with_apt_get(tmp_path: Path, apt_get: str, script: str) -> subprocess.CompletedProcess:
    """`script` under ci/tools.sh's shell options, as root (no sudo), with a fake apt-get on PATH.
    A session of its own, so that the fake can signal its whole process group as Ctrl-C does."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "apt-get").write_text(f"#!/bin/sh\n{apt_get}\n")
    (fake_bin / "apt-get").chmod(0o755)
    return subprocess.run(
        ["bash", "-c", f'set -euo pipefail\nSUDO=""\nlog() {{ :; }}\n{script}'],
        env={**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )


def test_apt_install_without_starting_removes_its_policy_rc_d_and_its_traps(tmp_path):
    policy, seen = tmp_path / "policy-rc.d", tmp_path / "seen"
    function = shell_function("apt_install_without_starting", **{"/usr/sbin/policy-rc.d": str(policy)})
    result = run_with_apt_get(
        tmp_path, f'cat "{policy}" >"{seen}"', f"{function}\napt_install_without_starting wrk\ntrap -p"
    )
    assert result.returncode == 0, result.stderr
    assert seen.read_text() == "#!/bin/sh\nexit 101\n"
    assert not policy.exists()
    assert result.stdout == "", "the traps outlived apt-get"


@pytest.mark.parametrize("signal", ["INT", "TERM"])
def test_an_interrupted_apt_get_leaves_no_policy_rc_d(tmp_path, signal):
    """Ctrl-C signals the terminal's whole process group, apt-get and the
    script alike; a TERM from a CI runner's cancel, the same."""
    policy = tmp_path / "policy-rc.d"
    function = shell_function("apt_install_without_starting", **{"/usr/sbin/policy-rc.d": str(policy)})
    result = run_with_apt_get(
        tmp_path, f"kill -{signal} 0\nsleep 10", f"{function}\napt_install_without_starting wrk\necho carried on"
    )
    assert result.returncode != 0 and "carried on" not in result.stdout
    assert not policy.exists()


def test_an_administrators_policy_rc_d_is_left_alone(tmp_path):
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    function = shell_function("apt_install_without_starting", **{"/usr/sbin/policy-rc.d": str(policy)})
    result = run_with_apt_get(tmp_path, "kill -INT 0\nsleep 10", f"{function}\napt_install_without_starting wrk")
    assert result.returncode != 0
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"


@pytest.mark.parametrize(
    ("installed_before", "systemd", "disabled"),
    [("", True, True), ("1.6.20~ds1-1+deb12u3", True, False), ("1.6.16~ds1-1", True, False), ("", False, False)],
    ids=["installed-now", "already-there", "upgraded", "no-systemd"],
)
def test_the_containerd_service_a_run_installs_is_disabled(tmp_path, installed_before, systemd, disabled):
    """Debian's package enables it: at the next boot it would hold the node's containerd socket."""
    systemd_dir = tmp_path / "systemd"
    if systemd:
        systemd_dir.mkdir()
    calls = tmp_path / "systemctl"
    function = shell_function("install_node", **{"/run/systemd/system": str(systemd_dir)})
    stubs = f"""
NODE_DEBS=("containerd=1.6.20" "kmod=30+20221128")
containerd="{installed_before}"
install_oci() {{ :; }}
build_pause_image() {{ :; }}
build_coredns_image() {{ :; }}
install_deb() {{ if [[ "$1" == containerd ]]; then containerd="1.6.20~ds1-1+deb12u3"; fi; }}
deb_installed_version() {{ if [[ "$1" == containerd ]]; then echo "$containerd"; fi; }}
systemctl() {{ echo "$*" >>"{calls}"; }}
"""
    result = run_with_apt_get(tmp_path, "exit 1", f"{stubs}\n{function}\ninstall_node")
    assert result.returncode == 0, result.stderr
    assert (calls.read_text() if calls.exists() else "") == ("disable --now containerd\n" if disabled else "")
