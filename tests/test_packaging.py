"""The harness is a package (cluster/pyproject.toml, `localcluster`) that the
venv installs: nothing finds code by editing sys.path, the benchmarks import no
test module, the harness pins what the root project pins, and it reads the API
server through one client (`ControlPlane.api`), running kubectl only for what a
user would type."""

from __future__ import annotations

import ast
import importlib.metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("server", "cluster", "tests", "bench")


def pins(pyproject: Path) -> dict[str, str]:
    """Requirement name -> its exact version, over the dependencies and every extra."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = [*project.get("dependencies", [])]
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    requirements = [Requirement(line) for line in lines]
    return {req.name.lower(): str(req.specifier) for req in requirements if req.specifier}


def python_files() -> list[Path]:
    return [path for folder in SOURCE_DIRS for path in sorted((ROOT / folder).rglob("*.py"))]


def sys_path_edits(source: str) -> list[int]:
    """Lines that touch `sys.path` (insert, slice assignment, append ...)."""
    tree = ast.parse(source)
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    ]


def imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def kubectl_reads(source: str) -> list[int]:
    """Lines that call a `kubectl` function or method with a `"get"` argument."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == "kubectl" or getattr(node.func, "attr", None) == "kubectl")
        and any(isinstance(arg, ast.Constant) and arg.value == "get" for arg in node.args)
    ]


def test_the_harness_pins_what_the_root_project_pins():
    harness = pins(ROOT / "cluster" / "pyproject.toml")
    root = pins(ROOT / "pyproject.toml")
    assert harness, "cluster/pyproject.toml pins nothing"
    assert {name: spec for name, spec in harness.items() if root.get(name) != spec} == {}


def test_no_code_edits_sys_path():
    edits = {str(path.relative_to(ROOT)): sys_path_edits(path.read_text()) for path in python_files()}
    assert {path: lines for path, lines in edits.items() if lines} == {}


def test_the_sys_path_check_sees_an_edit():
    assert sys_path_edits("import sys\nsys.path[:0] = ['cluster']\nsys.path.insert(0, 'tests')\n") == [2, 3]


def test_no_build_step_sets_pythonpath():
    scripts = [ROOT / "Makefile", *sorted((ROOT / "ci").glob("*.sh")), ROOT / ".ci" / "run"]
    assert [str(path.relative_to(ROOT)) for path in scripts if "PYTHONPATH" in path.read_text()] == []


def test_benchmarks_import_no_test_module():
    test_modules = {path.stem for path in (ROOT / "tests").glob("*.py")}
    imports = {path.name: imported_modules(path.read_text()) & test_modules for path in (ROOT / "bench").glob("*.py")}
    assert {name: modules for name, modules in imports.items() if modules} == {}


def test_the_harness_reads_the_api_through_its_client_not_kubectl():
    harness = [path for folder in ("cluster", "bench") for path in sorted((ROOT / folder).rglob("*.py"))]
    reads = {str(path.relative_to(ROOT)): kubectl_reads(path.read_text()) for path in harness}
    assert {path: lines for path, lines in reads.items() if lines} == {}


def test_the_kubectl_read_check_sees_a_read():
    source = 'kubectl(config, "get", "pods")\nstack.kubectl("get", "hpa")\nkubectl(config, "apply", "-f", "-")\n'
    assert kubectl_reads(source) == [1, 2]


def constraints() -> dict[str, str]:
    """constraints.txt: distribution name (normalized) -> its version."""
    lines = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if not line.startswith("#")]
    pairs = [line.split("==") for line in lines]
    assert all(len(pair) == 2 for pair in pairs), "every line pins one version"
    return {canonicalize_name(name): version for name, version in pairs}


def test_the_constraints_pin_what_pyproject_pins():
    """A pin moved in pyproject.toml without `make constraints` would make the install refuse, or lie."""
    pinned = constraints()
    for pyproject in (ROOT / "pyproject.toml", ROOT / "cluster" / "pyproject.toml"):
        for name, specifier in pins(pyproject).items():
            if canonicalize_name(name) == "inferscale":
                continue
            assert specifier == f"=={pinned.get(canonicalize_name(name))}", (pyproject, name)


def test_the_venv_holds_exactly_the_constrained_versions():
    """Each distribution the tests run with is in constraints.txt at that version, and nothing is left over there."""
    own = {"inferscale", "inferscale-localcluster", "pip", "setuptools", "wheel"}
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        if canonicalize_name(dist.metadata["Name"]) not in own
    }
    assert installed == constraints()
