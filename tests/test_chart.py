"""The Helm chart, rendered by the real helm CLI (built by ci/tools.sh).

Missing tools fail these tests (they do not skip): CI installs them with
`bash ci/tools.sh`, and a chart test that silently skips proves nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from copy import deepcopy
from functools import cache
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from inferscale.settings import Settings
from localcluster.binaries import binary

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "chart"
RULE_TESTS = Path(__file__).resolve().parent / "rules"
RELEASE = "inferscale"
NAMESPACE = "serving"
FULLNAME = "inferscale"  # release name contains the chart name: no suffix
PODS_METRIC = "inference_request_duration_seconds_avg"
# What the chart's HPA reads by default: the same less its 4 s offset.
OFFSET_METRIC = "inference_request_duration_seconds_avg_minus_offset"
EXTERNAL_METRIC = "inference_request_duration_seconds_avg_external"


# ---- tools -------------------------------------------------------------------


def run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def value_args(values: dict) -> list[str]:
    """--set-json for each top-level key: exact types, no --set string parsing surprises."""
    args: list[str] = []
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def helm_template(values: dict | None = None, extra: tuple[str, ...] = (), chart: Path = CHART):
    return run(
        [binary("helm"), "template", RELEASE, str(chart), "--namespace", NAMESPACE, *extra] + value_args(values or {})
    )


@cache
def _render_cached(values_json: str, extra: tuple[str, ...]) -> tuple[dict, ...]:
    result = helm_template(json.loads(values_json), extra)
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(values: dict | None = None, extra: tuple[str, ...] = ()) -> list[dict]:
    """The rendered documents, a copy of their own for each caller: a test that
    changes them leaves the cache, and every test after it, as helm rendered it."""
    return deepcopy(list(_render_cached(json.dumps(values or {}, sort_keys=True), extra)))


def only(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def kinds(docs: list[dict]) -> set[str]:
    return {d["kind"] for d in docs}


def server_container(docs: list[dict]) -> dict:
    return only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def chart_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


# ---- the matrix of value sets -------------------------------------------------

MATRIX = {
    "defaults": {},
    "hpa-off": {"autoscaling": {"enabled": False}},
    "external-metric": {"autoscaling": {"metric": {"type": "External"}}},
    # The chart's defaults until 2026-12-07: the duration read bare, the HPA's own band.
    "bare-duration": {"autoscaling": {"durationOffsetSeconds": 0, "behavior": {"scaleUp": {"tolerance": 0.1}}}},
    "keda": {"autoscaling": {"enabled": False}, "keda": {"enabled": True}},
    "pdb-off": {"podDisruptionBudget": {"enabled": False}},
    # The offset needs both (the refusals below): without them the bare duration.
    "servicemonitor-off": {"serviceMonitor": {"enabled": False}, "autoscaling": {"durationOffsetSeconds": 0}},
    "prometheusrule-off": {
        "prometheusRule": {"enabled": False},
        "dashboard": {"enabled": False},
        "autoscaling": {"durationOffsetSeconds": 0},
    },
    "dashboard-off": {"dashboard": {"enabled": False}},
    "prestop-exec": {"preStop": {"mode": "exec"}},
    "cpu-mode-more-slots": {
        "server": {"inferenceMode": "cpu", "modelConcurrency": 2, "maxQueue": 8, "inferenceDurationSeconds": 2.5},
    },
}
EXPECTED_KINDS = {
    "defaults": {
        "Deployment",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
        "PrometheusRule",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Pod",
    },
}


def expected_kinds(case: str) -> set[str]:
    base = set(EXPECTED_KINDS["defaults"])
    removed = {
        "hpa-off": {"HorizontalPodAutoscaler"},
        "keda": {"HorizontalPodAutoscaler"},
        "pdb-off": {"PodDisruptionBudget"},
        "servicemonitor-off": {"ServiceMonitor"},
        "prometheusrule-off": {"PrometheusRule", "ConfigMap"},  # the dashboard goes with its rules
        "dashboard-off": {"ConfigMap"},
    }.get(case, set())
    added = {"keda": {"ScaledObject"}}.get(case, set())
    return (base - removed) | added


def test_helm_is_the_pinned_version():
    tools = (ROOT / "ci" / "tools.sh").read_text()
    pinned = re.search(r'HELM_VERSION="\$\{HELM_VERSION:-(v[0-9.]+)\}"', tools).group(1)
    result = run([binary("helm"), "version", "--template", "{{.Version}}"])
    assert result.stdout.strip() == pinned


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_chart_lints_strictly(case):
    result = run([binary("helm"), "lint", "--strict", str(CHART), "--namespace", NAMESPACE] + value_args(MATRIX[case]))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_each_value_set_renders_the_expected_objects(case):
    docs = render(MATRIX[case])
    assert kinds(docs) == expected_kinds(case)
    for doc in docs:
        assert doc["metadata"]["namespace"] == NAMESPACE
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["helm.sh/chart"] == "inferscale-0.1.0"


# ---- Deployment ----------------------------------------------------------------


@pytest.mark.parametrize("case", ["defaults", "external-metric", "keda"])
def test_deployment_has_no_replicas_while_an_autoscaler_owns_it(case):
    assert "replicas" not in only(render(MATRIX[case]), "Deployment")["spec"]


def test_deployment_has_replicas_when_autoscaling_is_off():
    docs = render({"autoscaling": {"enabled": False}, "replicaCount": 3})
    assert only(docs, "Deployment")["spec"]["replicas"] == 3


def test_server_runs_inferscale_serve_on_the_named_http_and_admin_ports():
    container = server_container(render())
    assert container["command"] + container["args"] == ["inferscale", "serve"]
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "admin", "containerPort": 8081, "protocol": "TCP"},
    ]
    env = env_of(container)
    assert (env["PORT"], env["ADMIN_PORT"]) == ("8080", "8081")
    service = only(render(), "Service")
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("http", "http"), ("admin", "admin")]
    assert service["spec"]["selector"] == only(render(), "Deployment")["spec"]["selector"]["matchLabels"]


def services_of(values: dict) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in render(values) if d["kind"] == "Service"}


def test_node_port_is_set_only_on_a_service_that_has_node_ports():
    def node_ports(values):
        return [p.get("nodePort") for p in services_of(values)[FULLNAME]["spec"]["ports"]]

    assert node_ports({"service": {"type": "NodePort", "nodePort": 30080}}) == [30080]
    assert node_ports({"service": {"type": "NodePort"}}) == [None]
    assert node_ports({"service": {"nodePort": 30080}}) == [None, None]


@pytest.mark.parametrize("published", ["NodePort", "LoadBalancer"])
def test_a_published_service_leaves_the_admin_port_to_a_cluster_ip_service_of_its_own(published):
    # The admin listener (the kubelet's and Prometheus's) stays inside the
    # cluster; the longest name keeps the admin Service's name a DNS label.
    app, admin = "w" * 63, "w" * 57 + "-admin"
    values = {"service": {"type": published, "nodePort": 30080, "adminPort": 80}, "fullnameOverride": app}
    services = services_of(values)
    assert set(services) == {app, admin}
    assert [(p["name"], p["port"], p.get("nodePort")) for p in services[app]["spec"]["ports"]] == [("http", 80, 30080)]
    assert services[admin]["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"], p["targetPort"]) for p in services[admin]["spec"]["ports"]] == [
        ("admin", 80, "admin")
    ]
    assert services[admin]["spec"]["selector"] == services[app]["spec"]["selector"]
    monitor = only(render(values), "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= services[admin]["metadata"]["labels"].items()
    # Prometheus labels a target with the Service it was found through: the
    # series keep the app's Service name, which the rules, the adapter and KEDA select on.
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["relabelings"] == [
        {"targetLabel": "service", "replacement": app},
        {"targetLabel": "job", "replacement": app},
    ]
    exprs = [rule["expr"] for group in rendered_rule_groups(values)["groups"] for rule in group["rules"]]
    selecting = [expr for expr in exprs if "service=" in expr]
    assert selecting and all(f'service="{app}"' in expr for expr in selecting)


def test_probes_and_scrapes_use_the_admin_port():
    container = server_container(render())
    assert container["startupProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "admin"}
    [endpoint] = only(render(), "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("admin", "/metrics")


def test_startup_probe_allows_for_the_model_load():
    container = server_container(render())
    probe = container["startupProbe"]
    load = float(env_of(container)["MODEL_LOAD_SECONDS"])
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 2 * load


def test_liveness_outlasts_one_inference():
    container = server_container(render())
    probe = container["livenessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] > float(env_of(container)["INFERENCE_DURATION_SECONDS"])


@pytest.mark.parametrize("case", ["defaults", "prestop-exec", "cpu-mode-more-slots"])
def test_grace_period_exceeds_prestop_plus_drain_and_drain_exceeds_a_full_queue(case):
    docs = render(MATRIX[case])
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = env_of(container)
    pre_stop = container["lifecycle"]["preStop"]
    delay = pre_stop["sleep"]["seconds"] if "sleep" in pre_stop else float(pre_stop["exec"]["command"][-1])
    graceful = float(env["GRACEFUL_SHUTDOWN_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > graceful + delay
    slots, queue = int(env["MODEL_CONCURRENCY"]), int(env["MAX_QUEUE"])
    worst = (
        (queue + slots) * (float(env["INFERENCE_DURATION_SECONDS"]) + float(env["INFERENCE_JITTER_SECONDS"])) / slots
    )
    assert graceful > worst


def test_prestop_uses_the_native_sleep_action_by_default_and_exec_on_request():
    assert server_container(render())["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    exec_hook = server_container(render(MATRIX["prestop-exec"]))["lifecycle"]["preStop"]
    assert exec_hook == {"exec": {"command": ["/bin/sleep", "5"]}}
    assert "lifecycle" not in server_container(render({"preStop": {"mode": "none"}}))


def test_every_server_setting_reaches_the_container_as_env():
    server = chart_values()["server"]
    env = env_of(server_container(render()))
    for key, value in server.items():
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper()
        assert name in env, f"server.{key} is not passed as {name}"
        # A boolean as YAML and the server spell it.
        written = str(value).lower() if isinstance(value, bool) else str(value)
        assert env[name] == written, f"{name}={env[name]!r}, values say {value!r}"


def test_the_access_log_turned_off_reaches_the_container_as_false():
    env = env_of(server_container(render({"server": {"accessLog": False}})))
    assert env["ACCESS_LOG"] == "false"
    assert Settings(access_log=env["ACCESS_LOG"]).access_log is False


def test_large_integers_are_not_rendered_in_float_notation():
    env = env_of(server_container(render({"server": {"maxBodyBytes": 104857600}})))
    assert env["MAX_BODY_BYTES"] == "104857600"


def test_fractional_durations_keep_their_fraction():
    env = env_of(server_container(render(MATRIX["cpu-mode-more-slots"])))
    assert env["INFERENCE_DURATION_SECONDS"] == "2.5"
    assert env["INFERENCE_MODE"] == "cpu"


def test_metrics_dir_and_tmp_are_writable_emptydirs_under_a_read_only_root():
    docs = render()
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in (env_of(container)["PROMETHEUS_MULTIPROC_DIR"], "/tmp"):
        assert path in mounts, f"{path} is not mounted"
        assert "emptyDir" in volumes[mounts[path]]


# ---- pod security: the namespace enforces the "restricted" profile --------------

ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod_spec: dict) -> list[str]:
    """The checks of Kubernetes' Pod Security Standard "restricted" (v1.30+) that a chart can get wrong."""
    problems = []
    pod_ctx = pod_spec.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            problems.append(f"{flag} is set")
    for volume in pod_spec.get("volumes", []):
        kind = set(volume) - {"name"}
        if not kind <= ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} has type {kind}")
    if pod_ctx.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    containers = pod_spec.get("containers", []) + pod_spec.get("initContainers", [])
    for c in containers:
        ctx = c.get("securityContext", {})
        name = c["name"]
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps['add']}")
        if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if ctx.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser is 0")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp}")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
    return problems


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_pod_meets_the_restricted_pod_security_profile(case):
    docs = render(MATRIX[case])
    pod_specs = [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    pod_specs += [d["spec"] for d in docs if d["kind"] == "Pod"]
    assert len(pod_specs) == 2
    for spec in pod_specs:
        assert restricted_violations(spec) == []


def test_the_restricted_checker_catches_a_root_privileged_pod():
    bad = {
        "hostNetwork": True,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "securityContext": {"privileged": True, "runAsUser": 0}}],
    }
    assert len(restricted_violations(bad)) >= 6


# ---- HPA, KEDA -----------------------------------------------------------------


def test_hpa_scales_the_deployment_on_the_pods_duration_metric():
    docs = render()
    hpa = only(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    metric, utilization = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    # The 12 s target read through the 4 s offset.
    assert metric["pods"]["metric"]["name"] == OFFSET_METRIC
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "8"}
    assert utilization["pods"]["metric"]["name"] == "inference_slot_utilization"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 20)


def test_slot_utilization_is_a_second_pods_metric_beside_the_duration():
    hpa = only(render({"autoscaling": {"slotUtilization": {"target": 0.65}}}), "HorizontalPodAutoscaler")
    duration, utilization = hpa["spec"]["metrics"]
    assert duration["pods"]["metric"]["name"] == OFFSET_METRIC
    assert utilization == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "inference_slot_utilization"},
            "target": {"type": "AverageValue", "averageValue": "0.65"},
        },
    }
    external = only(render(MATRIX["external-metric"]), "HorizontalPodAutoscaler")
    assert [m["type"] for m in external["spec"]["metrics"]] == ["External", "Pods"]
    alone = only(render({"autoscaling": {"slotUtilization": {"enabled": False}}}), "HorizontalPodAutoscaler")
    assert [m["pods"]["metric"]["name"] for m in alone["spec"]["metrics"]] == [OFFSET_METRIC]


def test_hpa_target_sits_above_the_bare_inference_duration():
    docs = render()
    target = float(only(docs, "HorizontalPodAutoscaler")["spec"]["metrics"][0]["pods"]["target"]["averageValue"])
    # The duration the HPA holds: its target on the offset metric plus the offset.
    held = target + chart_values()["autoscaling"]["durationOffsetSeconds"]
    assert held == 12 > float(env_of(server_container(docs))["INFERENCE_DURATION_SECONDS"])


def test_hpa_behavior_reacts_fast_up_and_slowly_down():
    behavior = only(render(), "HorizontalPodAutoscaler")["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    # One scale-down round per drain: the previous round's pods are gone first.
    graceful = float(env_of(server_container(render()))["GRACEFUL_SHUTDOWN_SECONDS"])
    assert all(p["periodSeconds"] >= graceful for p in behavior["scaleDown"]["policies"])


@pytest.mark.parametrize(("kube_version", "kept"), [("1.32.0", False), ("1.33.0", True), ("1.35.0", True)])
def test_the_tolerance_is_left_out_where_the_hpa_api_has_no_such_field(kube_version, kept):
    """Before 1.33 the field is unknown, which a strict validation refuses; from 1.33 it is the API's own."""
    extra = ("--kube-version", kube_version)
    down = {"autoscaling": {"behavior": {"scaleDown": {"tolerance": 0.05}}}}
    hpa = only(render(down, extra), "HorizontalPodAutoscaler")["spec"]["behavior"]
    keda = {**MATRIX["keda"], "autoscaling": {**MATRIX["keda"]["autoscaling"], **down["autoscaling"]}}
    scaled = only(render(keda, extra), "ScaledObject")["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    for behavior in (hpa, scaled):
        assert [behavior["scaleUp"].get("tolerance"), behavior["scaleDown"].get("tolerance")] == (
            [0.4, 0.05] if kept else [None, None]
        )
        # Everything else as the values say.
        assert behavior["scaleUp"]["policies"] == chart_values()["autoscaling"]["behavior"]["scaleUp"]["policies"]


def test_a_tolerance_set_for_one_direction_reaches_the_hpa_beside_the_defaults():
    # Kubernetes' HPAConfigurableTolerance; docs/sizing.md sweeps it.
    behavior = only(render({"autoscaling": {"behavior": {"scaleUp": {"tolerance": 0.5}}}}), "HorizontalPodAutoscaler")[
        "spec"
    ]["behavior"]
    defaults = chart_values()["autoscaling"]["behavior"]
    assert behavior["scaleUp"] == {**defaults["scaleUp"], "tolerance": 0.5}
    assert behavior["scaleDown"] == defaults["scaleDown"]


def test_an_offset_reads_the_offset_metric_against_the_target_less_it_and_records_it_per_pod():
    """One value sets both halves: the series the adapter's rule takes off each
    pod's average, and the HPA's target less the same seconds. No pod reads it,
    so a change rolls no pod."""
    values = {"autoscaling": {"durationOffsetSeconds": 4.1, "targetAverageDurationSeconds": 12.2}}
    docs = render(values)
    duration, utilization = only(docs, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert duration == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "inference_request_duration_seconds_avg_minus_offset"},
            "target": {"type": "AverageValue", "averageValue": "8.1"},
        },
    }
    assert utilization["pods"]["metric"]["name"] == "inference_slot_utilization"
    groups = rendered_rule_groups(values)["groups"]
    [group] = [g for g in groups if g["name"].endswith(".autoscaling")]
    assert group["interval"] == chart_values()["serviceMonitor"]["interval"]
    assert group["rules"] == [
        {
            "record": "namespace_pod:inference_request_duration_seconds:hpa_offset",
            "expr": f'0 * max by (namespace, pod) (up{{namespace="{NAMESPACE}",service="{FULLNAME}"}}) + 4.1',
        }
    ]
    assert only(docs, "Deployment")["spec"]["template"] == only(render(), "Deployment")["spec"]["template"]
    [unavailable] = [r for g in groups for r in g["rules"] if r.get("alert") == "InferenceHPAMetricUnavailable"]
    assert "inference_request_duration_seconds_avg_minus_offset" in unavailable["annotations"]["description"]
    # At 0, off: the duration itself, and nothing recorded.
    bare = MATRIX["bare-duration"]
    assert only(render(bare), "HorizontalPodAutoscaler")["spec"]["metrics"][0]["pods"]["metric"]["name"] == PODS_METRIC
    assert not [g for g in rendered_rule_groups(bare)["groups"] if g["name"].endswith(".autoscaling")]


@pytest.mark.parametrize("case", ["external-metric", "keda", "hpa-off"])
def test_the_default_offset_stays_out_of_what_reads_the_duration_itself(case):
    """Only the chart's HPA on the Pods metric reads through the offset: the
    External metric, KEDA's query and a fixed count of pods take the default
    4 s as nothing, render no recorded offset and need no PrometheusRule."""
    docs = render(MATRIX[case])
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert not [g for g in rule["spec"]["groups"] if g["name"].endswith(".autoscaling")]
    assert "minus_offset" not in yaml.safe_dump_all(docs)
    without_rules = {**MATRIX[case], "prometheusRule": {"enabled": False}, "dashboard": {"enabled": False}}
    assert not [d for d in render(without_rules) if d["kind"] == "PrometheusRule"]


def test_external_variant_selects_this_service_and_compares_the_value():
    hpa = only(render(MATRIX["external-metric"]), "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "External"
    assert metric["external"]["metric"] == {"name": EXTERNAL_METRIC, "selector": {"matchLabels": {"service": FULLNAME}}}
    assert metric["external"]["target"] == {"type": "Value", "value": "12"}


def test_fractional_target_is_a_valid_quantity():
    values = {
        "autoscaling": {"targetAverageDurationSeconds": 0.75, "durationOffsetSeconds": 0},
        "server": {"inferenceDurationSeconds": 0.5},
    }
    hpa = only(render(values), "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "0.75"


def test_keda_scaledobject_queries_the_service_average_and_shares_the_hpa_settings():
    docs = render(MATRIX["keda"])
    scaled = only(docs, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {"name": FULLNAME}
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 20)
    assert (
        scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        == chart_values()["autoscaling"]["behavior"]
    )
    trigger, utilization = scaled["spec"]["triggers"]
    assert utilization["metricType"] == "Value" and utilization["metadata"]["threshold"] == "0.75"
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "Value"
    meta = trigger["metadata"]
    assert meta["serverAddress"] == "http://prometheus-operated.monitoring.svc:9090"
    assert meta["threshold"] == "12"
    selector = f'{{namespace="{NAMESPACE}",service="{FULLNAME}"}}'
    assert f"rate(inference_request_duration_seconds_sum{selector}[40s])" in meta["query"]
    assert "clamp_min(" in meta["query"]


def test_keda_queries_are_valid_promql():
    triggers = only(render(MATRIX["keda"]), "ScaledObject")["spec"]["triggers"]
    rules = [{"record": f"keda:query{n}", "expr": t["metadata"]["query"]} for n, t in enumerate(triggers)]
    promtool_check_rules({"groups": [{"name": "keda", "rules": rules}]})


# ---- refusals: schema and template checks -------------------------------------

REFUSALS = {
    "negative inference duration": ({"server": {"inferenceDurationSeconds": -1}}, "inferenceDurationSeconds"),
    "negative graceful shutdown": ({"server": {"gracefulShutdownSeconds": -5}}, "gracefulShutdownSeconds"),
    "negative target": ({"autoscaling": {"targetAverageDurationSeconds": -2}}, "targetAverageDurationSeconds"),
    "negative rate window": ({"autoscaling": {"rateWindow": "-1m"}}, "rateWindow"),
    "zero prestop": ({"preStop": {"seconds": 0}}, "preStop"),
    "min above max": (
        {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}},
        "autoscaling.minReplicas (5) must not exceed autoscaling.maxReplicas (3)",
    ),
    "min above max with keda": (
        {"autoscaling": {"enabled": False, "minReplicas": 4, "maxReplicas": 2}, "keda": {"enabled": True}},
        "must not exceed autoscaling.maxReplicas",
    ),
    "one Service port twice": ({"service": {"adminPort": 80}}, "service.port (80) must differ from service.adminPort"),
    "unknown server key": ({"server": {"inferenceDurationSecond": 3}}, "inferenceDurationSecond"),
    "unknown autoscaling key": ({"autoscaling": {"targetCPU": 80}}, "targetCPU"),
    "unknown serviceMonitor key": ({"serviceMonitor": {"labels": {"a": "b"}}}, "labels"),
    "unknown prometheusRule key": ({"prometheusRule": {"rules": []}}, "rules"),
    "unknown keda key": ({"keda": {"threshold": 3}}, "threshold"),
    "unknown dashboard key": ({"dashboard": {"folder": "x"}}, "folder"),
    "unknown probes key": ({"probes": {"startup": {"path": "/x"}}}, "path"),
    "bad inference mode": ({"server": {"inferenceMode": "gpu"}}, "inferenceMode"),
    "bad metric type": ({"autoscaling": {"metric": {"type": "Object"}}}, "type"),
    "bad prestop mode": ({"preStop": {"mode": "wait"}}, "mode"),
    "bad log level": ({"server": {"logLevel": "verbose"}}, "logLevel"),
    "hpa and keda together": ({"keda": {"enabled": True}}, "mutually exclusive"),
    "zero utilization target": ({"autoscaling": {"slotUtilization": {"target": 0}}}, "slotUtilization/target"),
    "grace period too short": (
        {"terminationGracePeriodSeconds": 60},
        "terminationGracePeriodSeconds (60) must exceed preStop.seconds + server.gracefulShutdownSeconds = 65",
    ),
    "drain shorter than a full queue": (
        {"server": {"maxQueue": 10}},
        "server.gracefulShutdownSeconds (60) must exceed the worst drain",
    ),
    "jitter above duration": (
        {"server": {"inferenceJitterSeconds": 11}},
        "must not exceed server.inferenceDurationSeconds",
    ),
    "startup budget under model load": ({"server": {"modelLoadSeconds": 20}}, "probes.startup"),
    "admin port on the http port": ({"server": {"adminPort": 8080}}, "server.adminPort (8080) must differ"),
    "removed threads setting": ({"server": {"threads": 3}}, "threads"),
    "a window of fewer than four scrapes": (
        {"serviceMonitor": {"interval": "30s"}},
        "autoscaling.rateWindow (40s) must be at least 4 x serviceMonitor.interval (30s)",
    ),
    "service port on the admin port": ({"service": {"port": 8081}}, "service.port (8081) must differ"),
    "metrics directory on /tmp": ({"server": {"prometheusMultiprocDir": "/tmp"}}, "must not be /tmp"),
    "a selector label among the pod labels": (
        {"podLabels": {"app.kubernetes.io/name": "other"}},
        "podLabels must not set app.kubernetes.io/name",
    ),
    # 0% blocks every drain, as 0 would; the API refuses more than 100%.
    "no disruption as a percentage": ({"podDisruptionBudget": {"maxUnavailable": "0%"}}, "maxUnavailable"),
    "disruption over 100 %": ({"podDisruptionBudget": {"maxUnavailable": "150%"}}, "maxUnavailable"),
    # The operator would drop the ServiceMonitor with only an event to say so.
    # The container would run with the extraEnv value, the probes and NOTES with the chart's.
    "extraEnv redefining a chart variable": (
        {"extraEnv": [{"name": "MODEL_CONCURRENCY", "value": "4"}]},
        "extraEnv must not set MODEL_CONCURRENCY",
    ),
    # The server reads its environment in any case: max_queue is MAX_QUEUE.
    "extraEnv redefining a chart variable in lower case": (
        {"extraEnv": [{"name": "max_queue", "value": "100"}]},
        "extraEnv must not set max_queue",
    ),
    # Every pod would read at least the target with no queue at all.
    "a target no longer than one inference": (
        {"autoscaling": {"targetAverageDurationSeconds": 10}},
        "autoscaling.targetAverageDurationSeconds (10) must exceed server.inferenceDurationSeconds (10)",
    ),
    "a target no longer than one inference with keda": (
        {"autoscaling": {"enabled": False, "targetAverageDurationSeconds": 8}, "keda": {"enabled": True}},
        "must exceed server.inferenceDurationSeconds",
    ),
    # The HPA's target is the target less the offset, in milli-units: it must stay above 0.
    "an offset up to the target": (
        {"autoscaling": {"durationOffsetSeconds": 12}},
        "autoscaling.durationOffsetSeconds (12) must be at least 0.001 below autoscaling.targetAverageDurationSeconds",
    ),
    "an offset within a milli-unit of the target": (
        {"autoscaling": {"durationOffsetSeconds": 11.9996}},
        "autoscaling.durationOffsetSeconds (11.9996) must be at least 0.001 below",
    ),
    # The offset reaches the adapter as the PrometheusRule's recorded series.
    "an offset without the prometheus rule": (
        {
            "autoscaling": {"durationOffsetSeconds": 4},
            "prometheusRule": {"enabled": False},
            "dashboard": {"enabled": False},
        },
        "autoscaling.durationOffsetSeconds (4) needs prometheusRule.enabled and serviceMonitor.enabled",
    ),
    # The chart's default offset, with its way out named.
    "the default offset without the prometheus rule": (
        {"prometheusRule": {"enabled": False}, "dashboard": {"enabled": False}},
        "set autoscaling.durationOffsetSeconds=0 and autoscaling.behavior.scaleUp.tolerance=0.1",
    ),
    # Scraped otherwise, the pods may carry no `service` label for the rule to select them by.
    "an offset without the service monitor": (
        {"autoscaling": {"durationOffsetSeconds": 4}, "serviceMonitor": {"enabled": False}},
        "autoscaling.durationOffsetSeconds (4) needs prometheusRule.enabled and serviceMonitor.enabled",
    ),
    "a dashboard without the rules it reads": (
        {"prometheusRule": {"enabled": False}},
        "dashboard.enabled needs prometheusRule.enabled",
    ),
    "successThreshold on the liveness probe": ({"probes": {"liveness": {"successThreshold": 3}}}, "successThreshold"),
    "a batch too large for the model process's line": (
        {"server": {"maxBatchSize": 4096, "maxFeatures": 65536}},
        "server.maxBatchSize x server.maxFeatures (4096 x 65536)",
    ),
    "a full name that cannot name a Service": ({"fullnameOverride": "web.v2"}, '"web.v2" (from the release name'),
    "scrape timeout above the interval": (
        {"serviceMonitor": {"interval": "2s"}},
        "serviceMonitor.scrapeTimeout (10s) must not exceed serviceMonitor.interval (2s)",
    ),
    "scrape timeout above a compound interval": (
        {"serviceMonitor": {"interval": "1m30s", "scrapeTimeout": "91s"}, "autoscaling": {"rateWindow": "6m"}},
        "serviceMonitor.scrapeTimeout (91s) must not exceed",
    ),
}


def test_a_null_for_any_value_renders_a_server_that_starts_or_is_refused_by_the_schema(tmp_path):
    """A null in a user's values deletes the chart's default (helm's coalesce):
    where a template needs the value, the schema must name it, not a nil pointer
    deep in a template, a `<nil>` in the manifest, an env the server refuses, or
    rules Prometheus refuses (`increase(x[])`)."""

    def paths(values: dict, prefix: tuple[str, ...] = ()):
        for key, value in values.items():
            yield (*prefix, key)
            if isinstance(value, dict):
                yield from paths(value, (*prefix, key))

    crashed, rule_groups = {}, {}
    for path in paths(chart_values()):
        nulled: dict | None = None
        for key in reversed(path):
            nulled = {key: nulled}
        mine = tmp_path / "mine.yaml"
        mine.write_text(yaml.safe_dump(nulled))
        result = helm_template(extra=("-f", str(mine)))
        if result.returncode != 0:
            # The schema's refusal or, for the rules and scrapes the offset and the dashboard
            # need (a null is off), the chart's own naming them.
            needed = "needs prometheusRule.enabled" in result.stderr
            named = needed and ".".join(path) in ("prometheusRule.enabled", "serviceMonitor.enabled")
            if "values don't meet the specifications of the schema" not in result.stderr and not named:
                crashed[".".join(path)] = result.stderr.splitlines()[0]
            continue
        if "<nil>" in result.stdout:
            crashed[".".join(path)] = "renders <nil>"
            continue
        docs = [doc for doc in yaml.load_all(result.stdout, Loader=yaml.CSafeLoader) if doc]
        for rule in (doc for doc in docs if doc["kind"] == "PrometheusRule"):
            rule_groups.setdefault(yaml.safe_dump(rule["spec"]), ".".join(path))
        env = {e["name"].lower(): e["value"] for e in server_container(docs)["env"] if "value" in e}
        try:
            Settings(**env)
        except ValidationError as error:
            crashed[".".join(path)] = str(error)
    for spec, path in rule_groups.items():  # promtool once per distinct rendering: most are the defaults'
        try:
            promtool_check_rules(yaml.safe_load(spec))
        except AssertionError as refused:
            crashed[path] = f"rules promtool refuses: {refused}"
    assert not crashed, crashed


@pytest.mark.parametrize("release", ["web.v2", "1web"])
def test_a_release_name_that_cannot_name_a_service_is_refused_by_name(release):
    result = run([binary("helm"), "template", release, str(CHART), "--namespace", NAMESPACE])
    assert result.returncode != 0, "helm accepted it"
    assert f'"{release}-inferscale" (from the release name' in result.stderr, result.stderr
    renamed = run([binary("helm"), "template", release, str(CHART), "--set", "fullnameOverride=web-v2"])
    assert renamed.returncode == 0, renamed.stderr


def test_extra_env_replaces_a_chart_variable_no_other_template_reads_in_place():
    from_pod_ip = {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    env = server_container(render({"extraEnv": [from_pod_ip, {"name": "LOG_LEVEL", "value": "debug"}]}))["env"]
    names = [e["name"] for e in env]
    assert names == [e["name"] for e in server_container(render())["env"]], "each name once, in the chart's order"
    assert env[names.index("HOST")] == from_pod_ip
    assert env_of({"env": env})["LOG_LEVEL"] == "debug"


def test_the_variables_extra_env_may_not_replace_are_every_one_another_template_reads():
    templates = CHART / "templates"
    readers = [path for path in templates.rglob("*") if path.is_file() and path.name != "_env.tpl"]
    read = {key for path in readers for key in re.findall(r"(?:\$s|\.Values\.server)\.([A-Za-z]+)", path.read_text())}
    as_env = {key: re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper() for key in chart_values()["server"]}
    guarded = re.search(r"\$sharedWithTemplates := list ((?:\"[A-Z_]+\" ?)+)", (templates / "_env.tpl").read_text())
    assert read, "no template reads a server value: the pattern is stale"
    assert {as_env[key] for key in read} == set(re.findall(r"[A-Z_]+", guarded.group(1)))


def test_extra_env_follows_the_charts_own_variables_unchanged():
    extra = [
        {"name": "OTEL_SERVICE_NAME", "value": "8080"},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    env = server_container(render({"extraEnv": extra}))["env"]
    assert env[-2:] == extra
    default_env = server_container(render())["env"]
    assert env[:-2] == default_env
    assert env_of({"env": default_env})["PORT"] == "8080"


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_values_are_refused_with_a_clear_message(case):
    values, message = REFUSALS[case]
    result = helm_template(values)
    assert result.returncode != 0, f"{case}: helm accepted it"
    assert message in result.stderr, result.stderr


def test_native_sleep_prestop_is_refused_on_kubernetes_before_1_30():
    result = helm_template(extra=("--kube-version", "1.29.0"))
    assert result.returncode != 0
    assert "preStop.mode=sleep needs Kubernetes >= 1.30" in result.stderr
    assert helm_template({"preStop": {"mode": "exec"}}, extra=("--kube-version", "1.29.0")).returncode == 0


def test_schema_documents_the_pair_checks_it_cannot_make():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "maxReplicas" in schema["properties"]["autoscaling"]["properties"]["minReplicas"]["description"]
    for section in (
        "server",
        "autoscaling",
        "serviceMonitor",
        "prometheusRule",
        "keda",
        "dashboard",
        "probes",
        "preStop",
        "podDisruptionBudget",
    ):
        assert schema["properties"][section]["additionalProperties"] is False, section


def test_every_values_key_is_in_the_schema():
    """A key in values.yaml that the schema does not know would be refused in the strict sections."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(chart_values()) <= set(schema["properties"])


# ---- ServiceMonitor, dashboard, NOTES, helm test --------------------------------


@pytest.mark.parametrize("interval, timeout", [("1m30s", "90s"), ("1s", "500ms"), ("2s", "2s")])
def test_scrape_timeout_up_to_the_interval_is_accepted_however_written(interval, timeout):
    values = {"serviceMonitor": {"interval": interval, "scrapeTimeout": timeout}, "autoscaling": {"rateWindow": "6m"}}
    monitor = only(render(values), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["scrapeTimeout"] == timeout


def test_servicemonitor_carries_the_label_kube_prometheus_stack_selects():
    monitor = only(render(), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {"port": "admin", "path": "/metrics", "interval": "10s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["selector"]["matchLabels"] == only(render(), "Service")["spec"]["selector"]
    custom = only(render({"serviceMonitor": {"additionalLabels": {"release": "monitoring"}}}), "ServiceMonitor")
    assert custom["metadata"]["labels"]["release"] == "monitoring"


class UniqueKeyLoader(yaml.SafeLoader):
    """Refuses a mapping with a key twice, which PyYAML (and the API server's decoder) would settle silently."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        duplicated = {key for key in keys if keys.count(key) > 1}
        if duplicated:
            raise yaml.constructor.ConstructorError(None, None, f"keys given twice: {duplicated}", node.start_mark)
        return super().construct_mapping(node, deep)


def test_extra_labels_replace_the_charts_own_and_each_key_is_written_once():
    part_of = {"app.kubernetes.io/part-of": "fraud"}
    values = {
        "podLabels": {**part_of, "team": "ml", "app.kubernetes.io/version": ""},
        "serviceMonitor": {"additionalLabels": {**part_of, "release": "monitoring"}},
        "prometheusRule": {"additionalLabels": {**part_of, "release": "monitoring"}},
        "dashboard": {"labels": {**part_of, "grafana_dashboard": "1"}},
    }
    result = helm_template(values)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.load_all(result.stdout, Loader=UniqueKeyLoader) if d]
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/part-of"] == "fraud" and pod_labels["team"] == "ml"
    assert pod_labels["app.kubernetes.io/version"] == ""  # the user's empty value, not the chart's
    assert only(docs, "Deployment")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for kind in ("ServiceMonitor", "PrometheusRule", "ConfigMap"):
        assert only(docs, kind)["metadata"]["labels"]["app.kubernetes.io/part-of"] == "fraud", kind
    assert only(docs, "ServiceMonitor")["metadata"]["labels"]["release"] == "monitoring"


def test_a_recreate_strategy_carries_no_rolling_update():
    """The API refuses rollingUpdate beside type Recreate; --set strategy.type=Recreate kept the default's."""
    result = helm_template(extra=("--set", "strategy.type=Recreate"))
    assert result.returncode == 0, result.stderr
    deployment = only([d for d in yaml.safe_load_all(result.stdout) if d], "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    # No type is the API's default, RollingUpdate, with the user's rollingUpdate kept.
    untyped = only(render({"strategy": {"type": None, "rollingUpdate": {"maxSurge": 3}}}), "Deployment")
    rolling = {"maxSurge": 3, "maxUnavailable": 0}
    assert untyped["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": rolling}
    assert only(render(), "Deployment")["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
    }


def generated_pod_name(deployment: str, template_hash: str, suffix: str = "x2x4q") -> str:
    """A Deployment's pod name as Kubernetes makes it: the ReplicaSet's name and a
    dash, cut to 58 characters, then 5 random ones (apiserver's names.SimpleNameGenerator).
    The hash and suffix given here are drawn from apimachinery's rand alphabet, as real ones are."""
    return f"{deployment}-{template_hash}-"[:58] + suffix


@pytest.mark.parametrize(
    "release, override, others",
    [
        ("inferscale", "", ("canary", "w" * 11, "w" * 26)),
        ("api", "", ("w" * 42,)),  # the other's hash cut, its 42 characters still longer than any hash
        ("fraud-detection-model-serving-production", "", ()),  # fullname of 51: the hash is cut
        ("r", "a" * 47, ()),  # the dash after the hash cut
        ("r", "a" * 57, ()),  # the whole hash cut
        ("r", "a" * 70, ()),  # the fullname itself cut (to 63, then 58)
    ],
    ids=["short", "short-other-long", "hash-cut", "dash-cut", "hash-gone", "name-cut"],
)
def test_the_restart_alert_selects_this_deployments_pods_however_long_the_name(release, override, others):
    """`others` name Deployments <fullname>-<other>: their pods must not match."""
    extra = ("--set", f"fullnameOverride={override}") if override else ()
    result = run([binary("helm"), "template", release, str(CHART), *extra])
    assert result.returncode == 0, result.stderr
    [deployment] = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Deployment"]
    name = deployment["metadata"]["name"]
    [alert] = [
        r
        for d in yaml.safe_load_all(result.stdout)
        if d and d["kind"] == "PrometheusRule"
        for g in d["spec"]["groups"]
        for r in g["rules"]
        if r.get("alert") == "InferencePodRestarted"
    ]
    # A PromQL =~ matcher is anchored at both ends, as fullmatch is.
    pods = re.search(r'pod=~"([^"]+)"', alert["expr"]).group(1)
    for template_hash in ("7d9c5b4f8", "5f6d7c8b9b", "64b7"):
        assert re.fullmatch(pods, generated_pod_name(name, template_hash)), (pods, name, template_hash)
    for other in others:
        assert not re.fullmatch(pods, generated_pod_name(f"{name}-{other}", "5f6d7c8b9")), (pods, other)


def test_notes_query_the_raw_histogram_without_the_recording_rule(tmp_path):
    notes = render_notes(MATRIX["prometheusrule-off"], tmp_path=tmp_path)
    assert "namespace_pod:inference_request_duration_seconds" not in notes
    selector = f'{{namespace="{NAMESPACE}",service="{FULLNAME}"}}'
    lines = notes.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("sum by (pod)"))
    query = " ".join(line.strip() for line in lines[start : start + 3])
    scraped = f"and on (namespace, pod) (up{selector} == 1)"
    duration_sum = f"rate(inference_request_duration_seconds_sum{selector}[40s])"
    assert query.startswith(f"sum by (pod) ({duration_sum} {scraped}) /"), query
    promtool_check_rules({"groups": [{"name": "notes", "rules": [{"record": "notes:query", "expr": query}]}]})


def test_dashboard_configmap_is_picked_up_by_the_grafana_sidecar():
    docs = render()
    [configmap] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    [(key, text)] = configmap["data"].items()
    assert key.endswith(".json")
    assert "__" not in re.sub(r"__name__", "", text), "a placeholder was not replaced"
    dashboard = json.loads(text)
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for needed in (
        "current vs desired",
        "average request duration",
        "p95",
        "queue depth",
        "in-flight",
        "requests per second",
        "errors",
        "slot utilization",
    ):
        assert needed in titles
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any(f'horizontalpodautoscaler="{FULLNAME}"' in e for e in exprs)
    assert any("namespace_pod:inference_request_duration_seconds:avg_rate40s" in e for e in exprs)
    assert "vector(0.75)" in exprs and "inference_model_slots" in " ".join(exprs)


def test_dashboard_queries_are_valid_promql():
    [configmap] = [d for d in render() if d["kind"] == "ConfigMap"]
    dashboard = json.loads(next(iter(configmap["data"].values())))
    rules = [
        {"record": f"dashboard:panel{p['id']}:{t['refId']}", "expr": t["expr"]}
        for p in dashboard["panels"]
        for t in p["targets"]
    ]
    promtool_check_rules({"groups": [{"name": "dashboard", "rules": rules}]})


# helm renders NOTES.txt only on install, which needs a cluster: this
# ConfigMap, added to a copy of the chart, renders it through tpl instead.
NOTES_CONFIGMAP = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rendered-notes\n"
    'data:\n  notes: {{ tpl (.Files.Get "notes-source.txt") . | quote }}\n'
)


def rendered_notes(manifests: str) -> str:
    [cm] = [d for d in yaml.safe_load_all(manifests) if d and d["metadata"]["name"] == "rendered-notes"]
    return cm["data"]["notes"]


def render_notes(values: dict | None = None, tmp_path: Path | None = None, kube_version: str = "1.35.0") -> str:
    """The chart's NOTES.txt as helm would render it on install to a cluster of `kube_version`."""
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    shutil.copy(copy / "templates" / "NOTES.txt", copy / "notes-source.txt")
    (copy / "templates" / "zz-notes.yaml").write_text(NOTES_CONFIGMAP)
    result = helm_template(values, extra=("--kube-version", kube_version), chart=copy)
    assert result.returncode == 0, result.stderr
    return rendered_notes(result.stdout)


def test_notes_print_the_next_commands_with_the_release_names(tmp_path):
    notes = render_notes(tmp_path=tmp_path)
    assert f"kubectl get hpa {FULLNAME} -w -n {NAMESPACE}" in notes
    assert f"kubectl port-forward -n {NAMESPACE} svc/{FULLNAME} 8080:80" in notes
    assert "kubectl port-forward -n monitoring svc/prometheus-operated 9090:9090" in notes
    assert "curl -s -X POST http://127.0.0.1:8080/predict" in notes
    assert (
        f'kubectl get --raw "/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/*/{OFFSET_METRIC}"'
        in notes
    )
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes


def render_stack_notes(tmp_path: Path, release: str, inferscale: dict, kube_version: str = "1.35.0") -> str:
    """The umbrella chart's NOTES.txt as helm would render it on install: its
    `inferscale` values are the app chart's defaults under the stack's own and
    then `inferscale`, as helm coalesces a dependency's values into its parent's."""
    stack = ROOT / "stack"
    values = yaml.safe_load((stack / "values.yaml").read_text())["inferscale"]
    stand_in = tmp_path / "stack-notes"
    (stand_in / "templates").mkdir(parents=True)
    (stand_in / "Chart.yaml").write_text("apiVersion: v2\nname: stack-notes\nversion: 0.0.0\n")
    coalesced = {"inferscale": {**chart_values(), **values, **inferscale}}
    (stand_in / "values.yaml").write_text(yaml.safe_dump(coalesced))
    shutil.copy(stack / "templates" / "NOTES.txt", stand_in / "notes-source.txt")
    # The app chart's helpers, which helm shares with the umbrella chart as a subchart's,
    # and leaves out with the subchart disabled.
    if coalesced["inferscale"].get("enabled", True):
        shutil.copy(CHART / "templates" / "_helpers.tpl", stand_in / "templates" / "_helpers.tpl")
    (stand_in / "templates" / "notes.yaml").write_text(NOTES_CONFIGMAP)
    command = [binary("helm"), "template", release, str(stand_in), "--namespace", NAMESPACE]
    result = run([*command, "--kube-version", kube_version])
    assert result.returncode == 0, result.stderr
    return rendered_notes(result.stdout)


@pytest.mark.parametrize(
    ("release", "inferscale", "service"),
    [
        ("demo", {}, "inferscale 8080:80"),  # the stack's fullnameOverride
        ("demo", {"fullnameOverride": "", "service": {"port": 8000}}, "demo-inferscale 8080:8000"),
        ("inferscale-stack", {"fullnameOverride": ""}, "inferscale-stack 8080:80"),  # no suffix, as _helpers.tpl
        ("demo", {"fullnameOverride": "", "nameOverride": "model"}, "demo-model 8080:80"),
    ],
)
def test_the_stacks_notes_forward_to_the_service_the_app_chart_names(tmp_path, release, inferscale, service):
    notes = render_stack_notes(tmp_path, release, inferscale)
    assert f"kubectl port-forward -n {NAMESPACE} svc/{service}" in notes, notes


def test_the_stacks_notes_query_the_metric_the_app_charts_hpa_reads(tmp_path):
    path = f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/*/"
    assert f'{path}{OFFSET_METRIC}"' in render_stack_notes(tmp_path / "offset", "demo", {})
    bare = {"autoscaling": {**chart_values()["autoscaling"], "durationOffsetSeconds": 0}}
    assert f'{path}{PODS_METRIC}"' in render_stack_notes(tmp_path / "bare", "demo", bare)


def test_the_stacks_notes_tell_a_cluster_before_1_35_to_set_the_app_charts_offset_to_0(tmp_path):
    old = render_stack_notes(tmp_path / "old", "demo", {}, kube_version="1.34.0")
    assert "less the app chart's 4 s offset (-4 at rest)" in old
    assert "WARNING: Kubernetes v1.34.0 honours the HPA's tolerance only from 1.35" in old
    assert "set inferscale.autoscaling.durationOffsetSeconds=0" in old
    assert "WARNING" not in render_stack_notes(tmp_path / "new", "demo", {}, kube_version="1.35.0")
    bare = {"autoscaling": {**chart_values()["autoscaling"], "durationOffsetSeconds": 0}}
    assert "offset" not in render_stack_notes(tmp_path / "bare", "demo", bare, kube_version="1.34.0")


def test_the_stacks_notes_name_no_service_when_the_app_chart_is_off(tmp_path):
    # helm leaves a disabled subchart's named templates out, so the helper must not be called.
    notes = render_stack_notes(tmp_path, "demo", {"enabled": False})
    assert "Watch the autoscaler" in notes and "Call the server" not in notes


@pytest.mark.parametrize("autoscaling", [True, False], ids=["autoscaling", "fixed-replicas"])
def test_notes_number_their_steps_without_a_gap(tmp_path, autoscaling):
    notes = render_notes({"autoscaling": {"enabled": autoscaling}}, tmp_path=tmp_path)
    steps = [int(line.split(".")[0]) for line in notes.splitlines() if re.match(r"\d+\. ", line)]
    assert steps == list(range(1, 7 if autoscaling else 6)), steps


def test_notes_show_the_external_metric_path_for_the_external_variant(tmp_path):
    notes = render_notes(MATRIX["external-metric"], tmp_path=tmp_path)
    assert (
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/{EXTERNAL_METRIC}?labelSelector=service%3D{FULLNAME}"
        in notes
    )


def test_notes_say_what_the_hpa_shows_through_an_offset(tmp_path):
    notes = render_notes(None, tmp_path / "default")
    assert "read through a 4 s offset: the HPA shows the pods' average less 4 s against\n8 s, and -4 at rest" in notes
    assert "Prometheus must select it" in notes
    assert f"/pods/*/{OFFSET_METRIC}" in notes, notes
    bare = render_notes(MATRIX["bare-duration"], tmp_path / "bare")
    assert "offset" not in bare and f"/pods/*/{PODS_METRIC}" in bare


def test_notes_read_both_keda_triggers(tmp_path):
    notes = render_notes(MATRIX["keda"], tmp_path=tmp_path)
    for trigger in ("s0-prometheus", "s1-prometheus"):
        assert (
            f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/{trigger}"
            f"?labelSelector=scaledobject.keda.sh%2Fname%3D{FULLNAME}"
        ) in notes


def test_notes_name_the_slot_utilization_when_the_hpa_scales_on_it(tmp_path):
    path = f'/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/*/inference_slot_utilization"'
    assert path not in render_notes({"autoscaling": {"slotUtilization": {"enabled": False}}}, tmp_path=tmp_path / "off")
    notes = render_notes(tmp_path=tmp_path / "on")
    assert "and on the share of its model slots in use (target 0.75), whichever asks for more pods." in notes
    assert path in notes


UP_BAND = {"behavior": {"scaleUp": {"tolerance": 0.75}}}
NO_BAND = {"durationOffsetSeconds": 0, "behavior": {"scaleUp": {"tolerance": None}}}


@pytest.mark.parametrize(
    ("kube_version", "autoscaling", "warned"),
    [
        ("1.34.0", UP_BAND, True),  # the feature gate is alpha and off: the API server drops the tolerance
        ("1.35.0", UP_BAND, False),  # on by default
        ("1.34.0", NO_BAND, False),  # none set
        # A 0 band is dropped too.
        ("1.34.0", {**NO_BAND, "behavior": {"scaleUp": {"tolerance": None}, "scaleDown": {"tolerance": 0}}}, True),
        ("1.34.0", {**UP_BAND, "enabled": False}, False),
    ],
    ids=["1.34", "1.35", "1.34-without-a-tolerance", "1.34-scale-down-tolerance", "1.34-fixed-replicas"],
)
def test_notes_warn_that_a_cluster_before_1_35_may_drop_the_tolerance(tmp_path, kube_version, autoscaling, warned):
    notes = render_notes({"autoscaling": autoscaling}, tmp_path=tmp_path, kube_version=kube_version)
    warning = f"WARNING: Kubernetes v{kube_version} honours autoscaling.behavior's tolerance only from 1.35,"
    assert (warning in notes) == warned, notes


TIMINGS = {"server": {"gracefulShutdownSeconds": 60, "inferenceTimeoutSeconds": 0}}


@pytest.mark.parametrize(
    ("timings", "told"),
    [
        ({}, None),  # the chart's 4 s on its 10 s and 12 s
        (
            {"server": {"inferenceDurationSeconds": 5}, "autoscaling": {"targetAverageDurationSeconds": 6}},
            "reads 0.50 of the target, where\nthe chart's 4 s with its 10 s inferences and 12 s target reads 0.75 "
            "(its pods give one back from 4 on). For your\ntimings autoscaling.durationOffsetSeconds = "
            "(X - 0.75 x T) / 0.25 = 2 s does the same.",
        ),
        (
            {
                "server": {"inferenceDurationSeconds": 1},
                "autoscaling": {"targetAverageDurationSeconds": 1.5, "durationOffsetSeconds": 0.1},
            },
            "set autoscaling.durationOffsetSeconds=0: the bare 1 s already reads 0.67 of the target.",
        ),
        # 0.7-0.8 fits: 2 s, 2.5 s and 0.4 s read (2 - 0.4) / (2.5 - 0.4) = 0.76.
        (
            {
                "server": {"inferenceDurationSeconds": 2},
                "autoscaling": {"targetAverageDurationSeconds": 2.5, "durationOffsetSeconds": 0.4},
            },
            None,
        ),
    ],
    ids=["chart", "offset-too-large", "no-offset-fits", "near-enough"],
)
def test_notes_name_the_offset_that_fits_timings_the_default_does_not(tmp_path, timings, told):
    values = {**timings, "server": {**TIMINGS["server"], **timings.get("server", {})}}
    notes = render_notes(values, tmp_path=tmp_path)
    if told is None:
        assert "NOTE: through the" not in notes, notes
    else:
        assert told in notes, notes


def test_notes_tell_a_cluster_before_1_35_to_set_the_default_offset_to_0(tmp_path):
    """The chart's defaults need the band on the way up that such a cluster drops."""
    notes = render_notes(tmp_path=tmp_path / "old", kube_version="1.34.0")
    assert "WARNING: Kubernetes v1.34.0 honours autoscaling.behavior's tolerance only from 1.35," in notes
    assert "The 4 s offset needs that band on the way up" in notes
    assert "set autoscaling.durationOffsetSeconds=0." in notes
    assert "WARNING" not in render_notes(tmp_path=tmp_path / "new", kube_version="1.35.0")


def test_helm_test_pod_calls_ready_and_predict_on_the_service():
    [pod] = [d for d in render() if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    env = env_of(container)
    assert env["BASE_URL"] == f"http://{FULLNAME}:80"
    script = container["command"][-1]
    assert '"/ready"' in script and '"/predict"' in script
    compile(script, "test-connection", "exec")
    # Not selected by the Service or the PDB.
    selector = only(render(), "Service")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()


# ---- PrometheusRule: promtool ----------------------------------------------------


def promtool_check_rules(rules: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump(rules, sort_keys=False))
        result = run([binary("promtool"), "check", "rules", str(path)])
        assert result.returncode == 0, result.stdout + result.stderr


def rendered_rule_groups(values: dict | None = None) -> dict:
    rule = only(render(values), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return {"groups": rule["spec"]["groups"]}


@pytest.mark.parametrize("case", ["defaults", "external-metric", "bare-duration", "keda", "hpa-off"])
def test_rendered_rules_pass_promtool_check(case):
    promtool_check_rules(rendered_rule_groups(MATRIX[case]))


def test_rules_carry_the_label_kube_prometheus_stack_selects():
    assert only(render(), "PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_hpa_alerts_exist_only_with_an_autoscaler():
    def alerts(values):
        return {r["alert"] for g in rendered_rule_groups(values)["groups"] for r in g["rules"] if "alert" in r}

    assert {"InferenceHPAAtMaxReplicas", "InferenceHPAMetricUnavailable"} <= alerts({})
    assert "InferenceHPAAtMaxReplicas" not in alerts(MATRIX["hpa-off"])
    assert {"InferenceScrapeFailing", "InferencePodRestarted", "InferenceModelProcessRestarted"} <= alerts(
        MATRIX["hpa-off"]
    )
    keda_rules = yaml.safe_dump(rendered_rule_groups(MATRIX["keda"]))
    assert f'horizontalpodautoscaler="keda-hpa-{FULLNAME}"' in keda_rules


def test_recording_rules_and_alerts_behave_as_specified(tmp_path):
    """promtool test rules: idle pod = 0, busy pod = its average, and every alert fires when it should.

    The rules come from the rendered chart (the single source); annotations are
    dropped for the unit test (promtool compares them verbatim; `promtool check
    rules` above validates their templates).
    """
    groups = rendered_rule_groups()
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rendered-rules.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    shutil.copy(RULE_TESTS / "inferscale_rules_test.yaml", tmp_path)
    result = run([binary("promtool"), "test", "rules", "inferscale_rules_test.yaml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
