"""The Dockerfile and the chart's Deployment describe the same container.

The Dockerfile is parsed and compared with what `helm template` renders
(command, port, user, metrics directory) and with pyproject.toml (the console
script): fast, without a build. tests/test_image.py (slow) builds the image
and runs it.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# ---- a small Dockerfile parser ---------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, rest = full.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, in order."""
    out: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, args))
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec (JSON) form: {args}"
    return value


def env_pairs(args: str) -> dict[str, str]:
    """ENV key=value ... (the form this Dockerfile uses)."""
    pairs = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        assert sep, f"ENV without '=' (legacy form) is not supported: {args}"
        pairs[key] = value
    return pairs


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def runtime(dockerfile) -> dict:
    """The final stage, summarized."""
    last = stages(dockerfile)[-1]
    summary: dict = {"env": {}, "expose": [], "from": last[0][1]}
    for keyword, args in last:
        if keyword == "ENV":
            summary["env"].update(env_pairs(args))
        elif keyword == "EXPOSE":
            summary["expose"] += [int(p.split("/")[0]) for p in args.split()]
        elif keyword in ("USER", "ENTRYPOINT", "CMD"):
            summary[keyword.lower()] = args
    return summary


# ---- tests --------------------------------------------------------------------------


def test_parser_joins_continuations_and_skips_comments():
    parsed = instructions('FROM a AS b\n# note\nENV X=1 \\\n    # inside\n    Y="two words"\nUSER 5\n')
    assert parsed == [("FROM", "a AS b"), ("ENV", 'X=1  Y="two words"'), ("USER", "5")]
    assert env_pairs(parsed[1][1]) == {"X": "1", "Y": "two words"}


def test_image_is_multi_stage_wheel_build_on_python_311_slim(dockerfile):
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2
    global_args = {}
    for keyword, args in instructions(dockerfile):
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = args.partition("=")
            global_args[name] = default
    for stage in all_stages:
        base = stage[0][1].split()[0]
        base = global_args.get(base.strip("${}"), base)
        assert base == "python:3.11-slim", f"stage base is {base}"
    builder_runs = " ".join(a for k, a in all_stages[0] if k == "RUN")
    assert "pip wheel" in builder_runs and " ." in builder_runs, "the builder must build the project's wheel"
    runtime_runs = " ".join(a for k, a in all_stages[-1] if k == "RUN")
    assert "pip install --no-index" in runtime_runs, "the runtime must install only the built wheels"


def test_command_is_what_the_chart_runs(runtime, container):
    image_command = exec_form(runtime["entrypoint"]) + exec_form(runtime["cmd"])
    assert image_command == container["command"] + container["args"] == ["inferscale", "serve"]


def test_command_is_the_projects_console_script():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["inferscale"] == "inferscale.cli:main"


def test_exposed_ports_are_the_containers_http_and_admin_ports(runtime, container):
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert runtime["expose"] == [ports["http"], ports["admin"]]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["PORT"], env["ADMIN_PORT"]) == (str(ports["http"]), str(ports["admin"]))


def test_user_is_numeric_non_root_and_matches_run_as_user(runtime, pod_spec, container):
    user, _, group = runtime["user"].partition(":")
    assert user.isdigit() and int(user) != 0, "USER must be a numeric non-root id (runAsNonRoot checks it)"
    for ctx in (pod_spec["securityContext"], container["securityContext"]):
        assert ctx["runAsUser"] == int(user)
        if group:
            assert ctx["runAsGroup"] == int(group)
        assert ctx["runAsNonRoot"] is True


def test_metrics_dir_is_the_same_and_mounted_writable(runtime, pod_spec, container):
    image_dir = runtime["env"]["PROMETHEUS_MULTIPROC_DIR"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PROMETHEUS_MULTIPROC_DIR"] == image_dir
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert image_dir in mounts
    [volume] = [v for v in pod_spec["volumes"] if v["name"] == mounts[image_dir]]
    assert "emptyDir" in volume


def test_build_context_holds_only_what_the_wheel_needs():
    lines = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "allowlist: ignore everything, then re-include"
    assert {"!pyproject.toml", "!server/"} <= set(lines)
    assert not any(ln.startswith("!.venv") or ln.startswith("!tests") for ln in lines)
