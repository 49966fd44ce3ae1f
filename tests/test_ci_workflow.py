"""The GitHub Actions workflow shipped for users' forks: it cannot run here
(no Docker, no GitHub), so actionlint (built by ci/tools.sh) checks its
syntax, expressions and the actions' inputs, and these tests check that it
runs what this project's own CI runs, with the same pins."""

from __future__ import annotations

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


def test_the_test_job_runs_what_this_projects_ci_runs():
    assert (REPO / ".ci" / "run").read_text().rstrip().endswith("exec make test")
    assert runs("test")[-1] == "make test"
    assert runs("lint") == ["make lint"]


def test_the_workflow_pins_what_ci_tools_pins():
    helm = re.search(r'HELM_VERSION="\$\{HELM_VERSION:-(v[\d.]+)\}"', (REPO / "ci" / "tools.sh").read_text()).group(1)
    assert {step["with"]["version"] for step in uses("azure/setup-helm")} == {helm}
    requires = re.search(r'requires-python = ">=([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert {step["with"]["python-version"] for step in uses("actions/setup-python")} == {requires}


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
