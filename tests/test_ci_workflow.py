"""The GitHub Actions workflow shipped for users' forks: it cannot run here
(no Docker, no GitHub), so actionlint (built by ci/tools.sh) checks its
syntax, expressions and the actions' inputs, and these tests check that it
runs what this project's own CI runs, with the same pins."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from localcluster.binaries import binary

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
KIND_SCRIPT = REPO / "ci" / "kind_e2e.sh"


def jobs() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def runs(job: str) -> list[str]:
    return [step["run"] for step in jobs()[job]["steps"] if "run" in step]


def uses(action: str) -> list[dict]:
    return [step for job in jobs().values() for step in job["steps"] if step.get("uses", "").startswith(action)]


def test_actionlint_passes_the_workflow():
    result = subprocess.run(
        [binary("actionlint"), "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_fails_a_broken_workflow(tmp_path):
    """The check can fail: an unknown input of a known action and a bad expression."""
    broken = WORKFLOW.read_text().replace("python-version:", "python-versions:", 1)
    broken = broken.replace("${{ github.ref }}", "${{ github.nope( }}")
    workflow = tmp_path / ".github" / "workflows" / "ci.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(broken)
    result = subprocess.run(
        [binary("actionlint"), "-no-color", str(workflow)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "python-versions" in result.stdout and "github.nope" in result.stdout, result.stdout


def test_the_test_job_runs_what_this_projects_ci_runs_but_the_cluster_tests():
    """GitHub's runners boot cgroup v2, which the local node refuses; the kind job runs the loop there."""
    assert (REPO / ".ci" / "run").read_text().rstrip().endswith("exec make test")
    assert runs("test")[-1] == """make test PYTEST_ARGS='-m "not cluster"'"""
    dry_run = subprocess.run(
        ["make", "-n", "test", 'PYTEST_ARGS=-m "not cluster"'], cwd=REPO, capture_output=True, text=True
    )
    # (Under make itself, as in `make test`, the dry run also says which directory it enters.)
    [pytest] = [line for line in dry_run.stdout.splitlines() if "-m pytest" in line]
    assert pytest.endswith('python -m pytest -m "not cluster"'), dry_run.stdout
    assert runs("lint") == ["make lint"]


def test_the_workflow_pins_what_ci_tools_pins():
    helm = re.search(r'HELM_VERSION="\$\{HELM_VERSION:-(v[\d.]+)\}"', (REPO / "ci" / "tools.sh").read_text()).group(1)
    assert {step["with"]["version"] for step in uses("azure/setup-helm")} == {helm}
    requires = re.search(r'requires-python = ">=([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert {step["with"]["python-version"] for step in uses("actions/setup-python")} == {requires}


def test_the_kind_job_pins_kind_and_so_its_node_image():
    [kind] = uses("helm/kind-action")
    assert re.fullmatch(r"v\d+\.\d+\.\d+", kind["with"]["version"]), kind
    assert re.fullmatch(r"v\d+\.\d+\.\d+", kind["with"]["kubectl_version"]), kind


def test_the_kind_job_runs_the_kind_script_which_reads_the_stacks_pins():
    assert runs("kind")[-1] == f"bash {KIND_SCRIPT.relative_to(REPO)}"
    assert subprocess.run(["bash", "-n", str(KIND_SCRIPT)], capture_output=True).returncode == 0
    function = re.search(r"^dependency_version\(\) \{.*?^\}", KIND_SCRIPT.read_text(), re.S | re.M).group(0)
    stack = yaml.safe_load((REPO / "stack" / "Chart.yaml").read_text())
    for dependency in stack["dependencies"][1:]:
        printed = subprocess.run(
            ["bash", "-c", f"{function}\ndependency_version {dependency['name']}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert printed == dependency["version"], dependency


def test_the_test_job_has_what_ci_tools_and_the_node_run():
    """ip, sysctl and modprobe (cluster/localcluster/node.py), which
    debian:bookworm lacks; npm with a Node.js that the Prometheus UI's
    lockfile accepts (20.19 or newer), which bookworm's (18) is not."""
    [install] = [run for run in runs("test") if "apt-get install" in run]
    assert {"iproute2", "procps", "kmod"} <= set(install.split())
    steps = jobs()["test"]["steps"]
    [node] = [step for step in steps if step.get("uses", "").startswith("actions/setup-node@")]
    major, minor, _ = (int(part) for part in node["with"]["node-version"].split("."))
    assert (major, minor) >= (20, 19)
    assert steps.index(node) < len(steps) - 1  # before `make test`


def fake_program(bin_dir: Path, name: str, body: str) -> None:
    (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
    (bin_dir / name).chmod(0o755)


def stand_ins(tmp_path: Path, clusters: Path, replicas: int) -> Path:
    """kind, docker, helm, kubectl and Python for the kind script; kind's
    refuses to create a cluster whose name it already lists, as kind does,
    and kubectl's HPA has minReplicas 2 and `replicas` now."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_program(
        bin_dir,
        "kind",
        f"""case "$1 $2" in
  "get clusters") cat "{clusters}" ;;
  "delete cluster") grep -vx "$4" "{clusters}" >"{clusters}.new" || true; mv "{clusters}.new" "{clusters}" ;;
  "create cluster") if grep -qx "$4" "{clusters}"; then echo "node(s) already exist for $4" >&2; exit 1; fi
    echo "$4" >>"{clusters}" ;;
esac""",
    )
    for name in ("docker", "helm", "python", "sleep"):
        fake_program(bin_dir, name, "exit 0")
    fake_program(
        bin_dir, "kubectl", f'case "$*" in *minReplicas*) echo 2 ;; *currentReplicas*) echo {replicas} ;; esac'
    )
    return bin_dir


def run_kind_script(bin_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(KIND_SCRIPT)],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": str(bin_dir / "python")},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_kind_script_replaces_a_cluster_a_failed_run_left(tmp_path):
    clusters = tmp_path / "clusters"
    clusters.write_text("inferscale\n")  # left by a failed run
    result = run_kind_script(stand_ins(tmp_path, clusters, replicas=3))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the HPA scaled to 3 pods" in result.stdout
    assert clusters.read_text() == "inferscale\n"


def test_the_kind_script_does_not_take_minreplicas_for_a_scale_out(tmp_path):
    """The HPA raises a new Deployment to minReplicas without any load."""
    clusters = tmp_path / "clusters"
    clusters.write_text("")
    result = run_kind_script(stand_ins(tmp_path, clusters, replicas=2))
    assert result.returncode == 1
    assert "the HPA never scaled out" in result.stderr
