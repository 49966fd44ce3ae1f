"""The links of the autoscaling pipeline, checked in the order data flows.

Each check reads what it needs, records what later checks build on in the
`Walk`, and either returns what it saw or raises `Broken` with the fix.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from .hpa import current_values
from .kube import ApiError, Cluster, Prometheus
from .selectors import describe, matches

HISTOGRAM = "inference_request_duration_seconds"
# kube-controller-manager's --horizontal-pod-autoscaler-sync-period default;
# the flag is not visible through the API.
HPA_SYNC_DEFAULT = "15s"
# prometheus-adapter's --metrics-relist-interval default, and the operator's scrape interval default.
RELIST_DEFAULT = "10m"
SCRAPE_DEFAULT = "30s"
# The reaction-time budget in the order a change in load travels through it.
BUDGET_ORDER = ("scrape interval", "rate window", "relist interval", "HPA sync period", "readiness")
METRICS_API = {"Pods": ("custom.metrics.k8s.io", "v1beta1"), "External": ("external.metrics.k8s.io", "v1beta1")}


class Broken(Exception):
    def __init__(self, detail: str, fix: str):
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


@dataclass
class Finding:
    link: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class Walk:
    """What the checks have learnt so far."""

    cluster: Cluster
    namespace: str
    release: str
    deployment: dict = field(default_factory=dict)
    ready_pods: list[str] = field(default_factory=list)
    service_monitor: dict = field(default_factory=dict)
    prometheus_resource: dict = field(default_factory=dict)
    prometheus: Prometheus | None = None
    hpa: dict = field(default_factory=dict)
    # Every metric the HPA scales on.
    metrics: list[dict] = field(default_factory=list)
    # The prometheus-adapter serving each kind of metric (Pods, External), read once.
    adapters: dict[str, dict] = field(default_factory=dict)
    budget: dict[str, str] = field(default_factory=dict)

    @property
    def service(self) -> str:
        """The chart's Service, Deployment and HPA share the release's full name."""
        return self.deployment["metadata"]["name"]

    @property
    def pod_selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.deployment["spec"]["selector"]["matchLabels"].items())

    def release_items(self, path: str) -> list[dict]:
        return self.cluster.items(path, labelSelector=f"app.kubernetes.io/instance={self.release}")


def pods_ready(walk: Walk) -> str:
    deployments = walk.release_items(f"/apis/apps/v1/namespaces/{walk.namespace}/deployments")
    if not deployments:
        raise Broken(
            f"no Deployment of release {walk.release!r} in namespace {walk.namespace!r}",
            f"check the release and namespace: helm list -n {walk.namespace}",
        )
    walk.deployment = deployments[0]
    pods = walk.cluster.items(f"/api/v1/namespaces/{walk.namespace}/pods", labelSelector=walk.pod_selector)
    walk.ready_pods = sorted(p["metadata"]["name"] for p in pods if _condition(p, "Ready") == "True")
    wanted = walk.deployment["spec"].get("replicas", 1)
    # Pods the scheduler found no room for: the HPA's count is then more than
    # runs, and the pods that do run carry the load of the ones that do not.
    unschedulable = _unschedulable(pods)
    if not walk.ready_pods:
        raise Broken(
            f"none of the {len(pods)} pods of Deployment {walk.service} is ready{unschedulable}",
            f"kubectl -n {walk.namespace} describe pods -l {walk.pod_selector}; "
            f"kubectl -n {walk.namespace} logs deploy/{walk.service}",
        )
    walk.budget["readiness"] = _readiness(walk.deployment)
    return f"{len(walk.ready_pods)} of {wanted} pods of Deployment {walk.service} ready{unschedulable}"


def _unschedulable(pods: list[dict]) -> str:
    """'; 4 Pending, unschedulable: <the scheduler's reason>', or '' when every pod has a node."""
    reasons = [
        c.get("message", "")
        for p in pods
        for c in p.get("status", {}).get("conditions") or []
        if c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable"
    ]
    if not reasons:
        return ""
    return f"; {len(reasons)} Pending, unschedulable: {reasons[0]}"


def service_monitor_selected(walk: Walk) -> str:
    monitors = walk.release_items(f"/apis/monitoring.coreos.com/v1/namespaces/{walk.namespace}/servicemonitors")
    if not monitors:
        raise Broken(
            f"release {walk.release!r} has no ServiceMonitor",
            "helm upgrade with serviceMonitor.enabled=true (needs the monitoring.coreos.com CRDs)",
        )
    walk.service_monitor = monitor = monitors[0]
    labels = monitor["metadata"].get("labels", {})
    namespace_labels = walk.cluster.get(f"/api/v1/namespaces/{walk.namespace}")["metadata"].get("labels", {})
    prometheuses = walk.cluster.items("/apis/monitoring.coreos.com/v1/prometheuses")
    if not prometheuses:
        raise Broken(
            "no Prometheus resource in the cluster",
            "install kube-prometheus-stack (with prometheus-values.yaml), which runs the Prometheus Operator",
        )
    for resource in prometheuses:
        if _selects(resource, labels, namespace_labels, walk.namespace):
            walk.prometheus_resource = resource
            home = resource["metadata"]["namespace"]
            walk.prometheus = Prometheus(walk.cluster, home)
            interval = monitor["spec"]["endpoints"][0].get("interval") or resource["spec"].get("scrapeInterval")
            walk.budget["scrape interval"] = interval or f"{SCRAPE_DEFAULT} (the operator's default)"
            name = monitor["metadata"]["name"]
            return f"ServiceMonitor {name} is selected by Prometheus {home}/{resource['metadata']['name']}"
    wanted = "; ".join(
        f"{p['metadata']['namespace']}/{p['metadata']['name']} selects "
        + (
            describe(p["spec"]["serviceMonitorSelector"])
            if p["spec"].get("serviceMonitorSelector") is not None
            else "no ServiceMonitor (its selector is unset)"
        )
        for p in prometheuses
    )
    raise Broken(
        f"ServiceMonitor {monitor['metadata']['name']} (labels {_labels(labels)}) "
        f"is selected by no Prometheus: {wanted}",
        "give the ServiceMonitor the labels a Prometheus selects (chart value serviceMonitor.additionalLabels, "
        "e.g. release: <your kube-prometheus-stack release>), or install kube-prometheus-stack with "
        "prometheus-values.yaml, which selects every ServiceMonitor",
    )


def targets_up(walk: Walk) -> str:
    prometheus = _prometheus(walk)
    targets = [
        t
        for t in prometheus.api("targets", state="active")["activeTargets"]
        if t["labels"].get("namespace") == walk.namespace and t["labels"].get("service") == walk.service
    ]
    if not targets:
        raise Broken(
            f"Prometheus ({prometheus.address}) has no target for Service {walk.namespace}/{walk.service}",
            "the ServiceMonitor's endpoint port must name a port of the Service, or of "
            f"{walk.service[:57].removesuffix('-')}-admin where the Service is a NodePort or LoadBalancer, "
            "whose series the ServiceMonitor must relabel service and job to the Service's name, as the chart's does "
            f"(kubectl -n {walk.namespace} get servicemonitor,service -o yaml); "
            "a changed ServiceMonitor reaches Prometheus within a minute or two",
        )
    down = [t for t in targets if t["health"] == "down"]
    if down:
        errors = "; ".join(f"{t['labels'].get('pod', t['scrapeUrl'])}: {t.get('lastError') or 'down'}" for t in down)
        raise Broken(
            f"{len(down)} of {len(targets)} targets down ({errors})",
            "Prometheus cannot scrape these pods' admin port: check NetworkPolicies and that "
            f"the port answers /metrics (kubectl -n {walk.namespace} port-forward pod/<pod> 8081)",
        )
    # "unknown" is a target discovered but not scraped yet: a pod a scale-up just added.
    up = [t for t in targets if t["health"] == "up"]
    if not up:
        raise Broken(
            f"none of the {len(targets)} targets scraped yet",
            "new targets are scraped within one scrape interval: run doctor again",
        )
    waiting = len(targets) - len(up)
    return f"{len(up)} targets up in scrape pool {targets[0]['scrapePool']}" + (
        f", {waiting} not scraped yet (new pods)" if waiting else ""
    )


def series_present(walk: Walk) -> str:
    result = _prometheus(walk).query(
        f'count by (namespace, pod) ({HISTOGRAM}_count{{namespace="{walk.namespace}",service="{walk.service}"}})'
    )
    pods = {sample["metric"].get("pod") for sample in result}
    if not result or None in pods:
        raise Broken(
            f"no {HISTOGRAM}_count series with namespace and pod labels for Service {walk.service}",
            "the ServiceMonitor must keep Prometheus's namespace and pod target labels "
            "(no relabeling that drops them); the adapter maps the HPA's pods by them",
        )
    return f"{HISTOGRAM} present for {len(pods)} pods"


def adapter_rule_answers(walk: Walk) -> str:
    walk.hpa = _hpa(walk)
    walk.metrics = hpa_metrics(walk.hpa)
    return _for_each_metric(walk, _rule_answers)


def _rule_answers(walk: Walk, metric: dict) -> str:
    kind, name = metric["type"], metric["name"]
    config = _adapter(walk, kind)["config"]
    rules = config.get("rules" if kind == "Pods" else "externalRules") or []
    served = {served_name: rule for rule in rules for served_name in [_served_name(rule)] if served_name}
    if name not in served:
        raise Broken(
            f"the HPA asks for {kind} metric {name!r}; the adapter's rules serve {sorted(served) or 'nothing'}",
            "set the chart's autoscaling.metric.name (or externalName, or slotUtilization.name) to a served name, "
            "or add the rule to the adapter's values (adapter-values.yaml)",
        )
    rule = served[name]
    window = re.search(r"\[([0-9a-z]+)\]", rule["metricsQuery"])
    # The HPA's first metric is the request duration, whose window the budget is about.
    walk.budget.setdefault("rate window", window.group(1) if window else "(none in the query)")
    result = _prometheus(walk).query(_expand(rule, walk, metric))
    if kind == "External":
        if not result:
            raise Broken(f"the adapter's query for {name} returns nothing", _too_little_data())
        return f"the adapter's query for {name} returns {float(result[0]['value'][1]):.3g}"
    answered = {sample["metric"].get(_label_for(rule, "pod")) for sample in result}
    missing = sorted(set(walk.ready_pods) - answered)
    if missing:
        raise Broken(f"the adapter's query for {name} has no value for pods {', '.join(missing)}", _too_little_data())
    return f"the adapter's query for {name} returns a value for each of the {len(walk.ready_pods)} ready pods"


def metrics_api_serves(walk: Walk) -> str:
    return _for_each_metric(walk, _api_serves)


def _api_serves(walk: Walk, metric: dict) -> str:
    kind, name = metric["type"], metric["name"]
    group, version = METRICS_API[kind]
    adapter = walk.adapters[kind]["deployment"]
    where = f"{adapter['metadata']['namespace']}/{adapter['metadata']['name']}"
    # The HPA controller uses the group's preferred version: every version registered must work.
    for service in walk.cluster.items("/apis/apiregistration.k8s.io/v1/apiservices"):
        if service["spec"].get("group") != group or _condition(service, "Available") == "True":
            continue
        name = service["metadata"]["name"]
        if not adapter.get("status", {}).get("readyReplicas"):
            raise Broken(
                f"prometheus-adapter ({where}) has no ready pod, so APIService {name} is unavailable",
                f"kubectl -n {adapter['metadata']['namespace']} rollout status deploy/{adapter['metadata']['name']}; "
                f"kubectl -n {adapter['metadata']['namespace']} logs deploy/{adapter['metadata']['name']}",
            )
        available: dict[str, Any] = next(
            (c for c in service.get("status", {}).get("conditions") or [] if c["type"] == "Available"), {}
        )
        raise Broken(
            f"APIService {name} is not Available: {available.get('reason')}: {available.get('message')}",
            f"the APIService must name the adapter's Service and port (the adapter runs in {where}) and the "
            f"API server must reach it: kubectl get apiservice {name} -o yaml",
        )
    base = f"/apis/{group}/{version}/namespaces/{walk.namespace}"
    if kind == "External":
        selector = describe(metric.get("selector") or {})
        items = walk.cluster.items(f"{base}/{name}", labelSelector=selector)
        if not items:
            raise Broken(f"{group} serves no {name} for selector {selector}", _too_little_data())
        return f"{group} serves {name} = {items[0]['value']}"
    items = walk.cluster.items(f"{base}/pods/*/{name}", labelSelector=walk.pod_selector)
    missing = sorted(set(walk.ready_pods) - {item["describedObject"]["name"] for item in items})
    if missing:
        raise Broken(
            f"{group} serves {name} for {len(items)} pods, not for {', '.join(missing)}",
            "the adapter learns of new series at each relist: wait one relist interval "
            f"({walk.budget.get('relist interval')}), then check the adapter's logs",
        )
    return f"{group} serves {name} for every ready pod"


def hpa_scaling(walk: Walk) -> str:
    status = walk.hpa.get("status", {})
    for condition in ("AbleToScale", "ScalingActive"):
        if _condition(walk.hpa, condition) != "True":
            found: dict[str, Any] = next((c for c in status.get("conditions", []) if c["type"] == condition), {})
            raise Broken(
                f"HPA {walk.hpa['metadata']['name']}: {condition} is {found.get('status', 'unknown')}: "
                f"{found.get('reason')}: {found.get('message')}",
                f"kubectl -n {walk.namespace} describe hpa {walk.hpa['metadata']['name']} (its events say why)",
            )
    values = []
    for metric in walk.metrics:
        current = current_values(walk.hpa).get((metric["type"], metric["name"]))
        if current is None:
            raise Broken(
                f"HPA {walk.hpa['metadata']['name']} has no current value of {metric['name']} yet",
                "it reads the metric at its next sync: wait one sync period and run doctor again",
            )
        values.append(f"{metric['name']} {current} against target {metric['target']}")
    return (
        f"HPA {walk.hpa['metadata']['name']}: {status.get('currentReplicas')} replicas "
        f"(desired {status.get('desiredReplicas')}), current value {', '.join(values)}"
    )


def alerts_quiet(walk: Walk) -> str:
    prometheus = _prometheus(walk)
    groups = prometheus.api("rules", type="alert")["groups"]
    if not any(g["name"] == f"{walk.service}.alerts" for g in groups):
        raise Broken(
            f"Prometheus has not loaded the chart's alerts (rule group {walk.service}.alerts)",
            "helm upgrade with prometheusRule.enabled=true, labelled for the Prometheus's ruleSelector "
            "(prometheusRule.additionalLabels)",
        )
    firing = prometheus.query(f'ALERTS{{alertstate="firing",namespace="{walk.namespace}"}}')
    ours = sorted(
        {
            a["metric"]["alertname"]
            for a in firing
            if walk.service in (a["metric"].get("service"), a["metric"].get("horizontalpodautoscaler"))
        }
    )
    if ours:
        raise Broken(
            f"firing: {', '.join(ours)}",
            f"each alert's description names its cause: Prometheus UI, /alerts ({prometheus.address})",
        )
    return "the chart's alerts are loaded, none firing"


LINKS: list[tuple[str, Callable[[Walk], str]]] = [
    ("pods ready", pods_ready),
    ("ServiceMonitor selected", service_monitor_selected),
    ("targets up", targets_up),
    ("request-duration series", series_present),
    ("adapter rule per pod", adapter_rule_answers),
    ("metrics API", metrics_api_serves),
    ("HPA", hpa_scaling),
    ("alerts", alerts_quiet),
]


def walk_pipeline(walk: Walk) -> list[Finding]:
    """The findings up to and including the first broken link."""
    findings = []
    for link, check in LINKS:
        try:
            findings.append(Finding(link, True, check(walk)))
        except Broken as broken:
            findings.append(Finding(link, False, broken.detail, broken.fix))
            break
        except ApiError as error:
            fix = (
                "check the kubeconfig's permissions: doctor needs get and list on what it names"
                if error.status in (401, 403)
                else "an answer doctor did not expect: read the error above"
            )
            findings.append(Finding(link, False, str(error), fix))
            break
    walk.budget.setdefault(
        "HPA sync period", f"{HPA_SYNC_DEFAULT} (kube-controller-manager's default; not visible through the API)"
    )
    walk.budget = {name: walk.budget[name] for name in BUDGET_ORDER if name in walk.budget}
    return findings


# ---- helpers -------------------------------------------------------------------------


def _prometheus(walk: Walk) -> Prometheus:
    """The Prometheus that selects the release's ServiceMonitor, which every link after that one reads."""
    if walk.prometheus is None:
        raise RuntimeError("no Prometheus yet: the ServiceMonitor link finds it, before the links that read it")
    return walk.prometheus


def _condition(obj: dict, kind: str) -> str | None:
    return next((c["status"] for c in obj.get("status", {}).get("conditions") or [] if c["type"] == kind), None)


def _labels(labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"


def _selects(prometheus: dict, labels: dict, namespace_labels: dict, namespace: str) -> bool:
    """The operator's rules: an unset serviceMonitorSelector selects nothing, an
    unset namespace selector only the Prometheus's own namespace."""
    spec = prometheus["spec"]
    if spec.get("serviceMonitorSelector") is None or not matches(spec["serviceMonitorSelector"], labels):
        return False
    namespaces = spec.get("serviceMonitorNamespaceSelector")
    if namespaces is None:
        return prometheus["metadata"]["namespace"] == namespace
    return matches(namespaces, namespace_labels)


def _readiness(deployment: dict) -> str:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    parts = []
    for probe in ("startupProbe", "readinessProbe"):
        if probe in container:
            p = container[probe]
            parts.append(
                f"{probe} every {p.get('periodSeconds', 10)}s (up to {p.get('failureThreshold', 3)} failures, "
                f"{p.get('initialDelaySeconds', 0)}s delay)"
            )
    return "; ".join(parts) or "no probes: ready once started"


def _hpa(walk: Walk) -> dict:
    for hpa in walk.cluster.items(f"/apis/autoscaling/v2/namespaces/{walk.namespace}/horizontalpodautoscalers"):
        target = hpa["spec"]["scaleTargetRef"]
        if target["kind"] == "Deployment" and target["name"] == walk.service:
            return hpa
    raise Broken(
        f"no HorizontalPodAutoscaler scales Deployment {walk.service}", "helm upgrade with autoscaling.enabled=true"
    )


def hpa_metrics(hpa: dict) -> list[dict]:
    metrics = []
    for metric in hpa["spec"].get("metrics") or []:
        if metric["type"] == "Pods":
            spec = metric["pods"]
            metrics.append(
                {"type": "Pods", "name": spec["metric"]["name"], "target": spec["target"].get("averageValue")}
            )
        elif metric["type"] == "External":
            spec = metric["external"]
            metrics.append(
                {
                    "type": "External",
                    "name": spec["metric"]["name"],
                    "selector": spec["metric"].get("selector"),
                    "target": spec["target"].get("value") or spec["target"].get("averageValue"),
                }
            )
    if not metrics:
        raise Broken(
            f"HPA {hpa['metadata']['name']} has no Pods or External metric",
            "the chart's HPA scales on autoscaling.metric: check the values",
        )
    return metrics


def _for_each_metric(walk: Walk, check: Callable[[Walk, dict], str]) -> str:
    """`check` on each of the HPA's metrics in turn: the HPA needs every one
    (a metric without values stops it scaling in), so the first to fail is the broken link."""
    return "; ".join(check(walk, metric) for metric in walk.metrics)


def _api_service(walk: Walk, kind: str) -> dict:
    group, version = METRICS_API[kind]
    try:
        return walk.cluster.get(f"/apis/apiregistration.k8s.io/v1/apiservices/{version}.{group}")
    except ApiError as error:
        if error.status != 404:
            raise
        raise Broken(
            f"no APIService {version}.{group}: nothing serves {kind} metrics",
            "install prometheus-adapter with adapter-values.yaml",
        ) from None


def _adapter(walk: Walk, kind: str) -> dict:
    """The prometheus-adapter Deployment serving `kind`, its arguments and its
    rules: the one behind the metrics APIService's Service, or, when that
    Service is missing (the next link's problem), the one labelled as the
    prometheus-adapter chart labels it."""
    if kind in walk.adapters:
        return walk.adapters[kind]
    deployments = _deployments_behind(walk, _api_service(walk, kind)["spec"].get("service"))
    deployments = deployments or walk.cluster.items(
        "/apis/apps/v1/deployments", labelSelector="app.kubernetes.io/name=prometheus-adapter"
    )
    if not deployments:
        raise Broken(
            f"no prometheus-adapter Deployment serves {METRICS_API[kind][0]}",
            "install prometheus-adapter with adapter-values.yaml",
        )
    container = deployments[0]["spec"]["template"]["spec"]["containers"][0]
    args = dict(
        a.removeprefix("--").split("=", 1) for a in container.get("args", []) if a.startswith("--") and "=" in a
    )
    walk.budget["relist interval"] = args.get("metrics-relist-interval", f"{RELIST_DEFAULT} (the adapter's default)")
    walk.adapters[kind] = {"deployment": deployments[0], "config": _adapter_config(walk, deployments[0], args)}
    return walk.adapters[kind]


def _deployments_behind(walk: Walk, service_ref: dict | None) -> list[dict]:
    if not service_ref:
        return []
    namespace = service_ref["namespace"]
    try:
        service = walk.cluster.get(f"/api/v1/namespaces/{namespace}/services/{service_ref['name']}")
    except ApiError as error:
        if error.status != 404:
            raise
        return []
    selector = {"matchLabels": service["spec"].get("selector") or {}}
    return [
        d
        for d in walk.cluster.items(f"/apis/apps/v1/namespaces/{namespace}/deployments")
        if selector["matchLabels"] and matches(selector, d["spec"]["template"]["metadata"].get("labels", {}))
    ]


def _adapter_config(walk: Walk, deployment: dict, args: dict[str, str]) -> dict:
    path = args.get("config")
    if not path:
        raise Broken(
            "prometheus-adapter runs without --config: it serves no rules of ours",
            "install prometheus-adapter with adapter-values.yaml",
        )
    spec = deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0].get("volumeMounts", [])}
    for volume in spec.get("volumes", []):
        if "configMap" in volume and mounts.get(volume["name"]) == posixpath.dirname(path):
            namespace = deployment["metadata"]["namespace"]
            data = walk.cluster.get(f"/api/v1/namespaces/{namespace}/configmaps/{volume['configMap']['name']}")["data"]
            return yaml.safe_load(data[posixpath.basename(path)])
    raise Broken(f"cannot find the ConfigMap behind the adapter's --config={path}", "check the adapter's Deployment")


def _served_name(rule: dict) -> str | None:
    """The metric name a rule serves: its series renamed by name.matches and
    name.as (default `$1` with a capture group, else `$0`), as the adapter does."""
    series = _series(rule)
    if series is None:
        return None
    naming = rule.get("name") or {}
    pattern = re.compile(naming.get("matches") or "^.*$")
    if not pattern.search(series):
        return None
    template = naming.get("as") or ("$1" if pattern.groups else "$0")
    return pattern.sub(re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", template), series)


def _series(rule: dict) -> str | None:
    """The metric a rule's seriesQuery names; None for a bare selector such as
    `{__name__=~"^container_.*"}`, which names none of its own."""
    name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"].strip().strip("'\""))
    return name.group(0) if name else None


def _label_for(rule: dict, resource: str) -> str:
    """The series label the rule maps onto `resource` (pod, namespace): its
    `resources.overrides` entry, or the resource's own name as the adapter assumes."""
    overrides = (rule.get("resources") or {}).get("overrides") or {}
    return next(
        (label for label, target in overrides.items() if target.get("resource") in (resource, resource + "s")), resource
    )


def _expand(rule: dict, walk: Walk, metric: dict) -> str:
    """The query the adapter sends for this HPA, its Go template filled as the adapter fills it."""
    series = _series(rule)
    # `rule` serves the HPA's metric (`_served_name`), so its query names a series.
    assert series is not None
    namespace = _label_for(rule, "namespace")
    if metric["type"] == "Pods":
        # Pod names are DNS labels: nothing in them needs escaping in a regexp.
        pods = "|".join(walk.ready_pods)
        group_by = _label_for(rule, "pod")
        matchers = f'{namespace}="{walk.namespace}",{group_by}=~"{pods}"'
    else:
        selector = (metric.get("selector") or {}).get("matchLabels") or {}
        matchers = ",".join([*(f'{k}="{v}"' for k, v in selector.items()), f'{namespace}="{walk.namespace}"'])
        group_by = namespace
    return (
        rule["metricsQuery"]
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", matchers)
        .replace("<<.GroupBy>>", group_by)
    )


def _too_little_data() -> str:
    return (
        "a pod has a value once Prometheus holds two samples of it in the window and its latest scrape "
        "succeeded: a new pod, or every pod just after a Prometheus restart, waits two scrapes; "
        "if it lasts, check the targets and the window against the scrape interval"
    )
