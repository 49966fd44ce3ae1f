"""ci/tools.sh as users run it: twice, with its own bin directory already on
PATH, as its output tells them to put it. Every link it makes to a program a
Debian package installed must point at that program, never at itself."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "ci" / "tools.sh"
# The policy-rc.d ci/tools.sh writes while its apt-get runs.
OURS = "#!/bin/sh\n# ci/tools.sh of inferscale, for one apt-get: remove me if that is not running\nexit 101\n"


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
    assert seen.read_text() == OURS
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


@pytest.mark.parametrize("theirs", ["#!/bin/sh\nexit 0\n", "#!/bin/sh\nexit 101\n"], ids=["allow", "forbid"])
def test_an_administrators_policy_rc_d_is_left_alone(tmp_path, theirs):
    """A bare `exit 101` is what many chroot setups write: only our own words are ours."""
    policy = tmp_path / "policy-rc.d"
    policy.write_text(theirs)
    function = shell_function("apt_install_without_starting", **{"/usr/sbin/policy-rc.d": str(policy)})
    result = run_with_apt_get(tmp_path, "kill -INT 0\nsleep 10", f"{function}\napt_install_without_starting wrk")
    assert result.returncode != 0
    assert policy.read_text() == theirs
    again = tmp_path / "again"
    again.mkdir()
    assert run_with_apt_get(again, "exit 0", f"{function}\napt_install_without_starting wrk").returncode == 0
    assert policy.read_text() == theirs


@pytest.mark.parametrize(
    ("installed_before", "marked", "enabled", "systemd", "disabled"),
    [
        ("", False, True, True, True),
        ("1.6.20~ds1-1+deb12u3", False, True, True, False),
        ("1.6.16~ds1-1", False, True, True, False),
        ("", False, True, False, False),
        ("1.6.20~ds1-1+deb12u3", True, True, True, True),
        ("1.6.20~ds1-1+deb12u3", True, False, True, False),
    ],
    ids=["installed-now", "already-there", "upgraded", "no-systemd", "a-cut-off-run-installed-it", "already-disabled"],
)
def test_the_containerd_service_a_run_installs_is_disabled(
    tmp_path, installed_before, marked, enabled, systemd, disabled
):
    """Debian's package enables it: at the next boot it would hold the node's
    containerd socket. A run cut off after installing it, before disabling it,
    left a mark that the next run acts on."""
    systemd_dir, mark = tmp_path / "systemd", tmp_path / "ours"
    if systemd:
        systemd_dir.mkdir()
    if marked:
        mark.touch()
    calls = tmp_path / "systemctl"
    function = shell_function("install_node", **{"/run/systemd/system": str(systemd_dir)})
    stubs = f"""
NODE_DEBS=("containerd=1.6.20" "kmod=30+20221128")
CACHE_DIR="{tmp_path}"
CONTAINERD_OURS="{mark}"
containerd="{installed_before}"
install_oci() {{ :; }}
build_pause_image() {{ :; }}
build_coredns_image() {{ :; }}
install_deb() {{ if [[ "$1" == containerd ]]; then containerd="1.6.20~ds1-1+deb12u3"; fi; }}
deb_installed_version() {{ if [[ "$1" == containerd ]]; then echo "$containerd"; fi; }}
systemctl() {{ if [[ "$1" == is-enabled ]]; then {"true" if enabled else "false"}; else echo "$*" >>"{calls}"; fi; }}
"""
    result = run_with_apt_get(tmp_path, "exit 1", f"{stubs}\n{function}\ninstall_node")
    assert result.returncode == 0, result.stderr
    assert (calls.read_text() if calls.exists() else "") == ("disable --now containerd\n" if disabled else "")
    # Acted on once: a containerd the user enables later is theirs, never disabled by a later run.
    assert not mark.exists()


def test_a_policy_rc_d_a_killed_run_left_is_taken_for_ours_and_removed(tmp_path):
    """SIGKILL runs no trap: the file with our exact words is left behind, and
    would keep every service of the machine from starting."""
    policy = tmp_path / "policy-rc.d"
    policy.write_text(OURS)
    function = shell_function("apt_install_without_starting", **{"/usr/sbin/policy-rc.d": str(policy)})
    result = run_with_apt_get(tmp_path, "exit 0", f"{function}\napt_install_without_starting wrk")
    assert result.returncode == 0, result.stderr
    assert not policy.exists()


def test_an_install_that_fails_on_old_package_lists_updates_them_and_tries_once_more(tmp_path):
    """A point release replaces packages in place: lists older than it name
    files the mirror no longer has."""
    calls = tmp_path / "calls"
    policy = tmp_path / "policy-rc.d"
    function = shell_function("apt_install_without_starting", **{"/usr/sbin/policy-rc.d": str(policy)})
    # install fails until an update has run
    updated = tmp_path / "updated"
    fake = f'echo "$1" >>"{calls}"; [ "$1" = update ] && touch "{updated}"; [ "$1" = update ] || [ -e "{updated}" ]'
    result = run_with_apt_get(tmp_path, fake, f"{function}\napt_install_without_starting wrk")
    assert result.returncode == 0, result.stderr
    assert calls.read_text().split() == ["install", "update", "install"]


def test_an_install_that_fails_after_the_update_fails_the_run(tmp_path):
    calls = tmp_path / "calls"
    policy = tmp_path / "policy-rc.d"
    function = shell_function("apt_install_without_starting", **{"/usr/sbin/policy-rc.d": str(policy)})
    fake = f'echo "$1" >>"{calls}"; [ "$1" = update ]'
    result = run_with_apt_get(tmp_path, fake, f"{function}\napt_install_without_starting wrk || echo failed $?")
    assert result.stdout.strip() == "failed 1"
    assert calls.read_text().split() == ["install", "update", "install"]
    assert not policy.exists()


def test_a_second_run_waits_for_the_first_on_the_same_cache(tmp_path):
    """Two runs at once (CI and a user's make) would delete each other's build directories."""
    env = {**os.environ, "INFERSCALE_CACHE": str(tmp_path)}
    env.pop("INFERSCALE_TOOLS_LOCKED", None)
    with open(tmp_path / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiting = subprocess.Popen(
            ["bash", str(TOOLS), "wrk"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            first = waiting.stderr.readline()
            assert "waiting for another run" in first, first
            assert waiting.poll() is None
            assert not (tmp_path / "bin").exists(), "it went on while the lock was held"
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
        out, err = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, err
    assert (tmp_path / "bin" / "wrk").exists()


def test_build_k8s_takes_the_lock_unless_tools_sh_holds_it_for_it(tmp_path):
    env = {**os.environ, "INFERSCALE_CACHE": str(tmp_path)}
    env.pop("INFERSCALE_TOOLS_LOCKED", None)
    # An unknown name: the script stops at it, after the lock and before any build.
    script = [ROOT / "ci" / "build_k8s.sh", "no-such-binary"]
    with open(tmp_path / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        inherited = subprocess.run(
            ["bash", *script], env={**env, "INFERSCALE_TOOLS_LOCKED": "1"}, capture_output=True, text=True, timeout=60
        )
        assert "unknown binary: no-such-binary" in inherited.stderr
        alone = subprocess.Popen(["bash", *script], env=env, stderr=subprocess.PIPE, text=True)
        try:
            assert "waiting for another run" in alone.stderr.readline()
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
        assert "unknown binary" in alone.communicate(timeout=60)[1]


def test_a_new_tag_or_user_rebuilds_an_image_whose_source_is_unchanged(tmp_path):
    archive = tmp_path / "pause.oci.tar"
    function = shell_function("build_binary_image")
    stubs = """
go() { echo "go version go1.26 linux/amd64"; }
pack_image() { echo "$3 $4" >"$5"; echo packed; }
build() { touch "$1/pause"; }
"""
    calls = [
        f"build_binary_image {archive} source-hash /pause v1 65535:65535 build",
        f"build_binary_image {archive} source-hash /pause v1 65535:65535 build",
        f"build_binary_image {archive} source-hash /pause v2 65535:65535 build",
        f"build_binary_image {archive} source-hash /pause v2 0:0 build",
    ]
    packed = []
    for call in calls:
        run_dir = tmp_path / f"run{len(packed)}"
        run_dir.mkdir()
        result = run_with_apt_get(run_dir, "exit 1", f"{stubs}\n{function}\n{call}")
        assert result.returncode == 0, result.stderr
        packed.append(result.stdout.strip() == "packed")
    assert packed == [True, False, True, True]


def test_the_monitoring_images_are_complete_only_with_every_file(tmp_path):
    """Its stamp names the versions built: a file removed since must still be rebuilt."""
    images, bin_dir, manifests = tmp_path / "images", tmp_path / "bin", tmp_path / "ksm"
    names = re.search(r"^MONITORING_ARCHIVES=\((.*?)\)", TOOLS.read_text(), re.S | re.M).group(1).split()
    assert len(names) == 6
    function = shell_function("monitoring_is_complete")
    setup = f'MONITORING_ARCHIVES=({" ".join(names)})\nMONITORING_IMAGES_DIR="{images}"\nBIN_DIR="{bin_dir}"\n'
    setup += f'KUBE_STATE_METRICS_MANIFESTS="{manifests}"\n{function}\n'

    def complete() -> bool:
        result = subprocess.run(["bash", "-c", f"{setup}monitoring_is_complete"], capture_output=True, timeout=30)
        return result.returncode == 0

    images.mkdir(), bin_dir.mkdir(), manifests.mkdir()
    for name in names:
        (images / f"{name}.oci.tar").write_text("layout")
    (bin_dir / "amtool").write_text("#!/bin/sh\n")
    (bin_dir / "amtool").chmod(0o755)
    (manifests / "deployment.yaml").write_text("kind: Deployment\n")
    assert complete()
    for missing in [images / "alertmanager.oci.tar", bin_dir / "amtool", manifests / "deployment.yaml"]:
        kept = missing.read_bytes()
        missing.unlink()
        assert not complete(), missing
        missing.write_bytes(kept)
        missing.chmod(0o755)
        assert complete()
