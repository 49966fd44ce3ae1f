"""adapter-values.yaml, prometheus-values.yaml, the stack/ umbrella chart and the
app chart agree with each other: same adapter rules on both install paths,
same metric names, windows and labels end to end.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_chart import MATRIX, only, render

from inferscale.simulation.chart_values import merged
from localcluster import adapter as localcluster_adapter
from localcluster import monitoring
from localcluster.binaries import binary
from localcluster.stack import FAST_LOOP, StackConfig, check_relist_covers_scrapes, crds_dir

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "stack"
REPO_URL = "https://prometheus-community.github.io/helm-charts"
# Image references as ci/tools.sh tags them: these tests read no image archive.
PROMETHEUS_IMAGE = f"{monitoring.PROMETHEUS_REPOSITORY}:v3.14.0-distroless"
ALERTMANAGER_IMAGE = f"{monitoring.ALERTMANAGER_REPOSITORY}:v0.35.0"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def adapter() -> dict:
    return load(ROOT / "adapter-values.yaml")


@pytest.fixture(scope="module")
def prometheus() -> dict:
    return load(ROOT / "prometheus-values.yaml")


@pytest.fixture(scope="module")
def chart_values() -> dict:
    return load(ROOT / "chart" / "values.yaml")


@pytest.fixture(scope="module")
def stack_values() -> dict:
    return load(STACK / "values.yaml")


def seconds(duration: str) -> float:
    """A Prometheus duration (15s, 1m, 1m30s) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"([0-9]+)(ms|s|m|h|d)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


# ---- both install paths get the same values ---------------------------------------


@pytest.mark.parametrize(
    "dependency,source",
    [
        ("prometheus-adapter", "adapter-values.yaml"),
        ("kube-prometheus-stack", "prometheus-values.yaml"),
    ],
)
def test_stack_values_nest_the_standalone_files_exactly(stack_values, dependency, source):
    nested = dict(stack_values[dependency])
    assert nested.pop("enabled") is True
    assert nested == load(ROOT / source)


def test_stack_values_are_regenerated():
    result = subprocess.run(
        [sys.executable, str(ROOT / "ci" / "sync_stack_values.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_stack_dependencies_are_pinned_with_conditions():
    chart = load(STACK / "Chart.yaml")
    assert chart["apiVersion"] == "v2" and chart["name"] == "inferscale-stack"
    deps = {d["name"]: d for d in chart["dependencies"]}
    assert set(deps) == {"inferscale", "kube-prometheus-stack", "prometheus-adapter"}
    assert deps["inferscale"]["repository"] == "file://../chart"
    assert deps["inferscale"]["version"] == load(ROOT / "chart" / "Chart.yaml")["version"]
    for name in ("kube-prometheus-stack", "prometheus-adapter"):
        assert deps[name]["repository"] == REPO_URL
        assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", deps[name]["version"]), "pin an exact version"
    for name, dep in deps.items():
        assert dep["condition"] == f"{name}.enabled"


def test_app_chart_has_no_dependencies():
    assert "dependencies" not in load(ROOT / "chart" / "Chart.yaml")


def test_helm_sees_the_pinned_dependencies():
    result = subprocess.run(
        [binary("helm"), "dependency", "list", str(STACK)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"kube-prometheus-stack\s+88\.5\.3\s", result.stdout)
    assert re.search(r"prometheus-adapter\s+5\.3\.0\s", result.stdout)


def test_umbrella_renders_the_app_with_its_values(tmp_path):
    """The remote charts can't be downloaded here; the app part of the umbrella can still be rendered."""
    stack = tmp_path / "stack"
    shutil.copytree(STACK, stack)
    chart = load(stack / "Chart.yaml")
    chart["dependencies"] = [d for d in chart["dependencies"] if d["name"] == "inferscale"]
    (stack / "Chart.yaml").write_text(yaml.safe_dump(chart))
    shutil.copytree(ROOT / "chart", stack / "charts" / "inferscale")
    result = subprocess.run(
        [binary("helm"), "template", "demo", str(stack), "--namespace", "loop"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Service", "inferscale") in names
    assert ("HorizontalPodAutoscaler", "inferscale") in names


# ---- adapter rules ----------------------------------------------------------------------


DURATION_METRIC = "inference_request_duration_seconds_avg"
UTILIZATION_METRIC = "inference_slot_utilization"


def custom_rule(adapter: dict, metric: str = DURATION_METRIC) -> dict:
    [rule] = [rule for rule in adapter["rules"]["custom"] if rule["name"]["as"] == metric]
    return rule


def external_rule(adapter: dict) -> dict:
    [rule] = adapter["rules"]["external"]
    return rule


def test_adapter_serves_only_the_inferscale_rules(adapter):
    assert adapter["rules"]["default"] is False
    assert "existing" not in adapter["rules"] or not adapter["rules"]["existing"]


def test_adapter_metric_names_are_what_the_chart_asks_for(adapter, chart_values):
    metric = chart_values["autoscaling"]["metric"]
    assert custom_rule(adapter)["name"]["as"] == metric["name"] == DURATION_METRIC
    assert external_rule(adapter)["name"]["as"] == metric["externalName"]
    assert chart_values["autoscaling"]["slotUtilization"]["name"] == UTILIZATION_METRIC
    assert [rule["name"]["as"] for rule in adapter["rules"]["custom"]] == [
        DURATION_METRIC,
        metric["offsetName"],
        UTILIZATION_METRIC,
    ]


def test_adapter_maps_namespace_and_pod_labels_to_resources(adapter):
    for rule in adapter["rules"]["custom"]:
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert external_rule(adapter)["resources"]["overrides"] == {"namespace": {"resource": "namespace"}}


@pytest.mark.parametrize("which", ["custom", "external"])
def test_adapter_queries_use_the_templates_and_guard_against_nan(adapter, which):
    rule = custom_rule(adapter) if which == "custom" else external_rule(adapter)
    query = rule["metricsQuery"]
    for placeholder in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
        assert placeholder in query
    assert "clamp_min(" in query
    assert "inference_request_duration_seconds_count" in rule["seriesQuery"]


def windows(query: str) -> set[str]:
    return set(re.findall(r"\[([0-9a-z]+)\]", query))


def test_rate_window_is_the_charts_and_at_least_four_scrapes(adapter, chart_values, prometheus):
    chart_window = chart_values["autoscaling"]["rateWindow"]
    for rule in (*adapter["rules"]["custom"], external_rule(adapter)):
        assert windows(rule["metricsQuery"]) == {chart_window}
    scrape = prometheus["prometheus"]["prometheusSpec"]["scrapeInterval"]
    assert chart_values["serviceMonitor"]["interval"] == scrape
    assert seconds(chart_window) >= 4 * seconds(scrape)


def test_adapter_relists_no_faster_than_prometheus_scrapes(adapter, prometheus):
    scrape = prometheus["prometheus"]["prometheusSpec"]["scrapeInterval"]
    assert seconds(adapter["metricsRelistInterval"]) >= seconds(scrape)


def test_adapter_talks_to_prometheus_operated_in_its_own_namespace(adapter):
    # The adapter chart runs the url through tpl; standalone both live in `monitoring`.
    assert adapter["prometheus"]["url"] == "http://prometheus-operated.{{ .Release.Namespace }}.svc"
    assert adapter["prometheus"]["port"] == 9090


def adapter_args(values: dict, **kwargs) -> dict[str, str]:
    objects = localcluster_adapter.deployment_objects(
        values,
        localcluster_adapter.adapter_config(values, kwargs.pop("rate_window", None)),
        "image:tag",
        b"cert",
        b"key",
        **kwargs,
    )
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(arg.removeprefix("--").split("=", 1) for arg in container["args"])


def test_the_local_stacks_adapter_runs_the_file_as_shipped(adapter):
    """The local stack's adapter Deployment (cluster/localcluster/adapter.py) takes
    Prometheus's address, relist interval and log level from the file."""
    args = adapter_args(adapter, relist_interval=None)
    assert args["prometheus-url"] == "http://prometheus-operated.monitoring.svc:9090"
    assert (args["metrics-relist-interval"], args["v"]) == (adapter["metricsRelistInterval"], str(adapter["logLevel"]))
    fast = adapter_args(adapter, relist_interval="5s", rate_window="10s")
    assert fast["metrics-relist-interval"] == "5s"


def test_the_local_stacks_adapter_refuses_a_url_it_cannot_render(adapter):
    values = {**adapter, "prometheus": {**adapter["prometheus"], "url": "http://{{ .Values.host }}"}}
    with pytest.raises(ValueError, match="only .* is resolved here"):
        adapter_args(values, relist_interval=None)


def adapter_query(rule: dict, label_matchers: str, group_by: str) -> str:
    """Fill the adapter's Go template the way prometheus-adapter does."""
    series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"].strip("'")).group(0)
    return (
        rule["metricsQuery"]
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", label_matchers)
        .replace("<<.GroupBy>>", group_by)
    )


def pod_series(labels: str, pod: str, count: str, total: str, up: str) -> list[tuple[str, str]]:
    """A pod's histogram count and sum and its `up`, as promtool input series."""
    return [
        (f'inference_request_duration_seconds_count{{{labels},pod="{pod}"}}', count),
        (f'inference_request_duration_seconds_sum{{{labels},pod="{pod}"}}', total),
        (f'up{{{labels},pod="{pod}"}}', up),
    ]


def test_adapter_queries_read_zero_only_for_pods_seen_idle(adapter, tmp_path):
    """Evaluates the adapter's filled-in queries with promtool on synthetic
    scrapes every 15 s: a busy pod reads its average and an idle one 0, while a
    pod with too little data (Prometheus restarted, its scrape failing, no
    histogram) reads as absent, never 0."""
    names = "busy|idle|restarted|failing|no-histogram"
    pods = adapter_query(custom_rule(adapter), f'namespace="serving",pod=~"{names}"', "pod")
    external = adapter_query(external_rule(adapter), 'service="inferscale",namespace="serving"', "namespace")
    labels = 'namespace="serving",service="inferscale",job="inferscale"'
    series = [
        *pod_series(labels, "busy", "0+1x40", "0+14x40", "1x40"),
        *pod_series(labels, "idle", "7x40", "70x40", "1x40"),
        # Busy, but Prometheus was down from 2m30s and scrapes it again from 4m45s.
        *pod_series(labels, "restarted", "0+1x10 _x8 19+1x20", "0+14x10 _x8 266+14x20", "1x10 _x8 1x20"),
        # Busy until its scrapes started failing at 5m.
        *pod_series(labels, "failing", "0+1x19 stale", "0+30x19 stale", "1x19 0x20"),
        (f'up{{{labels},pod="no-histogram"}}', "1x40"),
    ]
    at_5m = [{"labels": '{pod="busy"}', "value": 14}, {"labels": '{pod="idle"}', "value": 0}]
    promtool_test_rules(
        tmp_path,
        series,
        [
            {
                "expr": pods,
                "eval_time": "4m45s",
                "exp_samples": [
                    {"labels": '{pod="busy"}', "value": 14},
                    {"labels": '{pod="idle"}', "value": 0},
                    {"labels": '{pod="failing"}', "value": 30},
                ],
            },
            {
                "expr": pods,
                "eval_time": "5m",
                "exp_samples": [
                    *at_5m,
                    {"labels": '{pod="restarted"}', "value": 14},
                ],
            },
            {
                "expr": f"round({external}, 0.001)",
                "eval_time": "5m",
                "exp_samples": [
                    # (14 + 0 + 14) s over 2 requests per scrape.
                    {"labels": '{namespace="serving"}', "value": 14},
                ],
            },
        ],
    )


def test_the_offset_rule_takes_each_pods_recorded_offset_off_its_average(adapter, chart_values, tmp_path):
    """The offset rule's filled-in query with promtool: the busy pod reads its
    average less its recorded offset, the idle one minus the offset, and a pod
    whose offset Prometheus has not recorded (its rule not selected, or not
    yet evaluated) is absent, not its bare average."""
    rule = custom_rule(adapter, chart_values["autoscaling"]["metric"]["offsetName"])
    recorded = "namespace_pod:inference_request_duration_seconds:hpa_offset"
    assert rule["seriesQuery"].startswith(recorded + "{")
    query = adapter_query(rule, 'namespace="serving",pod=~"busy|idle|unrecorded"', "pod")
    labels = 'namespace="serving",service="inferscale",job="inferscale"'
    series = [
        *pod_series(labels, "busy", "0+1x40", "0+14x40", "1x40"),
        *pod_series(labels, "idle", "7x40", "70x40", "1x40"),
        *pod_series(labels, "unrecorded", "0+1x40", "0+14x40", "1x40"),
        # As the chart's rule records it: the pod's namespace and name only.
        (f'{recorded}{{namespace="serving",pod="busy"}}', "4x40"),
        (f'{recorded}{{namespace="serving",pod="idle"}}', "4x40"),
    ]
    expected = [{"labels": '{pod="busy"}', "value": 10}, {"labels": '{pod="idle"}', "value": -4}]
    promtool_test_rules(tmp_path, series, [{"expr": query, "eval_time": "5m", "exp_samples": expected}])


def promtool_test_rules(tmp_path: Path, series: list[tuple[str, str]], expr_tests: list[dict]) -> None:
    """`promtool test rules` of `expr_tests` on `series` scraped every 15 s: more
    slowly than the chart's 10 s, so that the 40s window holds 2 or 3 samples,
    the fewest the rules must still answer with."""
    test = {
        "rule_files": ["empty-rules.yaml"],
        "evaluation_interval": "15s",
        # Prometheus 3's rate() may end a float's last bit away from the exact ratio.
        "fuzzy_compare": True,
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": expr_tests,
            }
        ],
    }
    (tmp_path / "empty-rules.yaml").write_text("groups: []\n")
    (tmp_path / "adapter_test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run(
        [binary("promtool"), "test", "rules", "adapter_test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def pod_gauges(labels: str, pod: str, running: str, queued: str, slots: str, up: str) -> list[tuple[str, str]]:
    """A pod's in-flight, queue and slot gauges and its `up`, as promtool input series."""
    return [
        (f'inference_in_flight_requests{{{labels},pod="{pod}"}}', running),
        (f'inference_queue_depth{{{labels},pod="{pod}"}}', queued),
        (f'inference_model_slots{{{labels},pod="{pod}"}}', slots),
        (f'up{{{labels},pod="{pod}"}}', up),
    ]


# Each pod's gauges scraped every 15 s, and what the utilization reads at 5m for
# the pods that have a value (Prometheus 3's 40s window ending at 5m is
# left-open: the 3 samples from 4m30s to 5m).
UTILIZATION_LABELS = 'namespace="serving",service="inferscale",job="inferscale"'
UTILIZATION_SERIES = [
    # 2 slots, both running and 1 queued: 1.5.
    *pod_gauges(UTILIZATION_LABELS, "steady", "2x40", "1x40", "2x40", "1x40"),
    # 4 slots, 1 and 3 running on alternate scrapes (1 3 1 from 4m30s): (5 / 3) / 4.
    *pod_gauges(UTILIZATION_LABELS, "alternating", "1 3 1 3 1 3 1 3 1 3 1 3 1 3 1 3 1 3 1 3 1", "0x20", "4x20", "1x20"),
    *pod_gauges(UTILIZATION_LABELS, "idle", "0x40", "0x40", "2x40", "1x40"),
    *pod_gauges(UTILIZATION_LABELS, "failing", "2x19 stale", "0x19 stale", "2x19 stale", "1x19 0x20"),
    # The model process died at 4m30s: its gauges are gone until it is back.
    *pod_gauges(UTILIZATION_LABELS, "restarting", "1x18 stale", "0x18 stale", "2x18 stale", "1x40"),
    # Prometheus down from 1m until 5m: one sample, 1 running of 2.
    *pod_gauges(UTILIZATION_LABELS, "rescraped", "2x4 _x15 1", "0x4 _x15 0", "2x4 _x15 2", "1x4 _x15 1"),
]
UTILIZATION_AT_5M = {"steady": 1.5, "alternating": 5 / 12, "idle": 0, "rescraped": 0.5}


def test_slot_utilization_reads_held_over_slots_and_is_absent_without_a_scrape(adapter, tmp_path):
    """The utilization rule, filled in as the adapter fills it: running +
    queued over the pod's slots, averaged over the window; 0 for an idle pod;
    absent for a pod whose scrape fails or whose model process is restarting
    (no slots exported); a pod Prometheus has scraped only once since a
    restart reads that one sample, its real state."""
    names = "|".join(dict.fromkeys(pod_of(series) for series, _ in UTILIZATION_SERIES))
    query = adapter_query(custom_rule(adapter, UTILIZATION_METRIC), f'namespace="serving",pod=~"{names}"', "pod")
    promtool_test_rules(
        tmp_path,
        UTILIZATION_SERIES,
        [
            {
                "expr": query,
                "eval_time": "5m",
                "exp_samples": [
                    {"labels": f'{{pod="{pod}"}}', "value": value} for pod, value in UTILIZATION_AT_5M.items()
                ],
            }
        ],
    )


def test_keda_utilization_trigger_is_the_mean_of_what_the_adapter_serves_per_pod(tmp_path):
    """The ScaledObject's second trigger reads, service-wide, the average the
    chart's own HPA takes over the adapter's per-pod values: the pods without
    a value are left out, not counted as idle."""
    triggers = only(render(MATRIX["keda"]), "ScaledObject")["spec"]["triggers"]
    [query] = [t["metadata"]["query"] for t in triggers if "inference_model_slots" in t["metadata"]["query"]]
    mean = sum(UTILIZATION_AT_5M.values()) / len(UTILIZATION_AT_5M)
    promtool_test_rules(
        tmp_path,
        UTILIZATION_SERIES,
        [
            {
                "expr": f"round({query}, 0.001)",
                "eval_time": "5m",
                "exp_samples": [{"labels": "{}", "value": promql_round(mean, 0.001)}],
            }
        ],
    )


def pod_of(series: str) -> str:
    return re.search(r'pod="([^"]+)"', series)[1]


def promql_round(value: float, to_nearest: float) -> float:
    """PromQL's round(value, to_nearest), float for float."""
    inverse = 1 / to_nearest
    return math.floor(value * inverse + 0.5) / inverse


# ---- kube-prometheus-stack values -----------------------------------------------------


def selects_by_release_label(spec: dict, kind: str) -> bool:
    return spec.get(f"{kind}SelectorNilUsesHelmValues", True) and not spec.get(f"{kind}Selector")


def test_prometheus_finds_the_charts_servicemonitor_and_rules(prometheus, chart_values):
    spec = prometheus["prometheus"]["prometheusSpec"]
    for kind, section in (("serviceMonitor", "serviceMonitor"), ("rule", "prometheusRule")):
        if selects_by_release_label(spec, kind):
            # Then the chart's objects must carry release: <the kube-prometheus-stack release>.
            assert chart_values[section]["additionalLabels"].get("release") == "kube-prometheus-stack"
        else:
            assert spec[f"{kind}Selector"] == {} and spec[f"{kind}NamespaceSelector"] == {}, (
                "select every object in every namespace"
            )


def test_grafana_sidecar_loads_the_charts_dashboard_from_any_namespace(prometheus, chart_values):
    sidecar = prometheus["grafana"]["sidecar"]["dashboards"]
    assert prometheus["grafana"]["enabled"] is True and sidecar["enabled"] is True
    assert chart_values["dashboard"]["labels"] == {sidecar["label"]: sidecar["labelValue"]}
    assert sidecar["searchNamespace"] == "ALL"


def test_kube_state_metrics_stays_on_for_the_hpa_alerts(prometheus):
    assert prometheus.get("kubeStateMetrics", {}).get("enabled", True) is True


def test_retention_is_small(prometheus):
    spec = prometheus["prometheus"]["prometheusSpec"]
    assert seconds(spec["retention"]) <= 7 * 86400


def test_alertmanager_sends_watchdog_to_the_dead_mans_switch_every_minute(prometheus):
    alertmanager = prometheus["alertmanager"]
    assert alertmanager["enabled"] is True
    route = alertmanager["config"]["route"]
    [watchdog] = [r for r in route["routes"] if 'alertname = "Watchdog"' in r.get("matchers", [])]
    assert watchdog["receiver"] == "deadmansswitch"
    # A switch pages after a few missed heartbeats: they must come often.
    assert seconds(watchdog["repeat_interval"]) <= 60 and seconds(watchdog["group_interval"]) <= 60
    assert {"deadmansswitch", route["receiver"]} <= {r["name"] for r in alertmanager["config"]["receivers"]}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        # What the fault test lays over it: a webhook to its own heartbeat receiver.
        {
            "receivers": [
                {"name": "null"},
                {"name": "deadmansswitch", "webhook_configs": [{"url": "http://10.87.0.1:8080/"}]},
            ]
        },
    ],
    ids=["as-shipped", "with-a-webhook"],
)
def test_alertmanager_config_as_the_local_stack_renders_it_passes_amtool(prometheus, overrides, tmp_path):
    [secret, *_] = monitoring.alertmanager_objects(
        merged(prometheus["alertmanager"]["config"], overrides), 30093, ALERTMANAGER_IMAGE
    )
    config = tmp_path / "alertmanager.yaml"
    config.write_text(secret["stringData"]["alertmanager.yaml"])
    result = subprocess.run([binary("amtool"), "check-config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_local_stacks_prometheus_sends_alerts_to_its_alertmanager(prometheus):
    spec = monitoring.prometheus_spec(prometheus, PROMETHEUS_IMAGE, None, "5s")
    [target] = spec["alerting"]["alertmanagers"]
    [_, _, service] = monitoring.alertmanager_objects(prometheus["alertmanager"]["config"], 30093, ALERTMANAGER_IMAGE)
    assert (target["name"], target["namespace"]) == (service["metadata"]["name"], service["metadata"]["namespace"])
    assert target["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert spec["rules"] == {"alert": {"resendDelay": "5s"}}
    assert "rules" not in monitoring.prometheus_spec(prometheus, PROMETHEUS_IMAGE, None)


def test_kube_api_down_waits_its_for_then_fires_for_a_failing_or_vanished_apiserver(tmp_path):
    """KubeAPIDown on promtool, scrapes every 15 s: the API server answers for
    5 minutes, then fails its scrapes (or its target is gone, a stale marker);
    the alert is pending through the chart's 15m and fires after."""
    [group] = monitoring.api_down_rule("15m")["spec"]["groups"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [group]}))
    fired = [{"exp_labels": {"severity": "critical"}, "exp_annotations": group["rules"][0]["annotations"]}]
    tests = [
        {
            "interval": "15s",
            "input_series": [{"series": 'up{job="apiserver",instance="10.0.0.1:6443"}', "values": values}],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "KubeAPIDown", "exp_alerts": []},
                {"eval_time": "19m", "alertname": "KubeAPIDown", "exp_alerts": []},
                {"eval_time": "21m", "alertname": "KubeAPIDown", "exp_alerts": fired},
            ],
        }
        for values in ("1x20 0x100", "1x20 stale")
    ]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": tests}))
    result = subprocess.run(
        [binary("promtool"), "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_local_stack_refuses_a_relist_faster_than_the_apps_scrapes(tmp_path):
    """5 s relists against 10 s scrapes lost the HPA's metrics on every other relist."""
    behind = StackConfig(workdir=tmp_path, relist_interval="5s", chart_values={"serviceMonitor": {"interval": "10s"}})
    with pytest.raises(ValueError, match=r"relist interval \(5s\) must be at least the app's scrape interval \(10s\)"):
        check_relist_covers_scrapes(behind)
    check_relist_covers_scrapes(StackConfig(workdir=tmp_path, **FAST_LOOP))
    check_relist_covers_scrapes(StackConfig(workdir=tmp_path))


def test_the_crds_applied_are_the_pinned_operators_not_the_last_left_in_the_cache(tmp_path, monkeypatch):
    """A pin change leaves the old version's directory beside the new one, and
    v0.100.0 sorts before v0.93.1 as text."""
    monkeypatch.setenv("INFERSCALE_CACHE", str(tmp_path))
    crds = tmp_path / "crds"
    (crds / "prometheus-operator-v0.100.0").mkdir(parents=True)
    (crds / "prometheus-operator-v0.100.0" / "monitoring.coreos.com_servicemonitors.yaml").write_text("kind: CRD\n")
    (crds / "prometheus-operator-v0.9.0").mkdir()
    (crds / "prometheus-operator-v0.9.0" / "monitoring.coreos.com_servicemonitors.yaml").write_text("kind: CRD\n")
    with pytest.raises(FileNotFoundError, match=monitoring.OPERATOR_VERSION):
        crds_dir()
    pinned = crds / f"prometheus-operator-{monitoring.OPERATOR_VERSION}"
    pinned.mkdir()
    (pinned / "monitoring.coreos.com_servicemonitors.yaml").write_text("kind: CRD\n")
    assert crds_dir() == pinned


def test_the_operator_pin_is_the_one_ci_tools_builds():
    script = (Path(__file__).resolve().parents[1] / "ci" / "tools.sh").read_text()
    pin = re.search(r'PROMETHEUS_OPERATOR_VERSION="\$\{PROMETHEUS_OPERATOR_VERSION:-(v[\d.]+)\}"', script).group(1)
    assert pin == monitoring.OPERATOR_VERSION


def test_the_install_guide_installs_the_charts_at_the_versions_the_umbrella_pins():
    """Without --version, helm installs whatever the repository has newest, which these values files never met."""
    guide = (Path(__file__).resolve().parents[1] / "docs" / "install.md").read_text()
    stack = yaml.safe_load((Path(__file__).resolve().parents[1] / "stack" / "Chart.yaml").read_text())
    for dependency in stack["dependencies"][1:]:
        installs = re.findall(rf"prometheus-community/{dependency['name']} --version (\S+)", guide)
        assert installs == [dependency["version"]], dependency["name"]
