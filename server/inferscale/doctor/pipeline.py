"""The links of the autoscaling pipeline, checked in the order data flows.

Each check reads what it needs, records what later checks build on in the
`Walk`, and either returns what it saw or raises `Broken` with the fix.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml

from .hpa import current_values
from .kube import ApiError, Cluster, Prometheus, PrometheusUnavailable
from .selectors import InvalidSelector, describe, matches

HISTOGRAM = "inference_request_duration_seconds"
# The chart's name: its selector labels (chart/templates/_helpers.tpl,
# inferscale.selectorLabels) carry it, unless the release set nameOverride.
CHART_NAME = "inferscale"
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
    # The chart's app.kubernetes.io/name: its own name unless the release set nameOverride.
    chart_name: str = CHART_NAME
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
        return describe(self.deployment["spec"]["selector"])

    @property
    def chart_selector(self) -> str:
        """The chart's selector labels. The instance label alone is not enough: an
        umbrella release (docs/install.md) gives it to every chart's objects."""
        return f"app.kubernetes.io/name={self.chart_name},app.kubernetes.io/instance={self.release}"


def pods_ready(walk: Walk) -> str:
    path = f"/apis/apps/v1/namespaces/{walk.namespace}/deployments"
    deployment = _the_one(walk, "Deployment", walk.cluster.objects(path, labelSelector=walk.chart_selector))
    if deployment is None:
        raise Broken(
            f"no Deployment in namespace {walk.namespace!r} has the chart's labels {walk.chart_selector}",
            f"check the release and namespace: helm list -n {walk.namespace}; a release installed with "
            "nameOverride (or as an aliased subchart) is labelled with that name: pass it as --chart-name",
        )
    walk.deployment = deployment
    pods = walk.cluster.objects(f"/api/v1/namespaces/{walk.namespace}/pods", labelSelector=walk.pod_selector)
    walk.ready_pods = sorted(p["metadata"]["name"] for p in pods if _condition(p, "Ready") == "True")
    wanted = walk.deployment["spec"].get("replicas", 1)
    # Pods the scheduler found no room for: the HPA's count is then more than
    # runs, and the pods that do run carry the load of the ones that do not.
    unschedulable = _unschedulable(pods)
    if not walk.ready_pods:
        raise Broken(
            f"none of the {len(pods)} pods of Deployment {walk.service} is ready{unschedulable}",
            f"kubectl -n {walk.namespace} describe pods -l {shlex.quote(walk.pod_selector)}; "
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
    path = f"/apis/monitoring.coreos.com/v1/namespaces/{walk.namespace}/servicemonitors"
    with _operator_crds():
        monitor = _the_one(walk, "ServiceMonitor", walk.cluster.objects(path, labelSelector=walk.chart_selector))
    if monitor is None:
        raise Broken(
            f"release {walk.release!r} has no ServiceMonitor with the chart's labels {walk.chart_selector}",
            "helm upgrade with serviceMonitor.enabled=true",
        )
    walk.service_monitor = monitor
    name = monitor["metadata"]["name"]
    endpoints = monitor["spec"].get("endpoints") or []
    if not endpoints:
        raise Broken(
            f"ServiceMonitor {name} has no endpoints: Prometheus scrapes nothing through it",
            "helm upgrade the release: the chart's ServiceMonitor scrapes /metrics on the admin port",
        )
    labels = monitor["metadata"].get("labels", {})
    namespace_labels = walk.cluster.object(f"/api/v1/namespaces/{walk.namespace}")["metadata"].get("labels", {})
    with _operator_crds():
        prometheuses = walk.cluster.objects("/apis/monitoring.coreos.com/v1/prometheuses")
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
            interval = endpoints[0].get("interval") or resource["spec"].get("scrapeInterval")
            walk.budget["scrape interval"] = interval or f"{SCRAPE_DEFAULT} (the operator's default)"
            return f"ServiceMonitor {name} is selected by Prometheus {home}/{resource['metadata']['name']}"
    wanted = "; ".join(
        f"{p['metadata']['namespace']}/{p['metadata']['name']} selects {_selection(p)}" for p in prometheuses
    )
    raise Broken(
        f"ServiceMonitor {name} (labels {_labels(labels)}) is selected by no Prometheus: {wanted}",
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
    rules = _rules(walk, kind)
    served = {serving: rule for rule in rules for serving in [served_name(rule)] if serving}
    if name not in served:
        # A Go-only regex (`\z`), or a seriesQuery that is a bare selector: doctor cannot tell what they serve.
        unread = [f"#{i}" for i, rule in enumerate(rules) if _name_pattern(rule) is None or _series(rule) is None]
        if unread:
            return (
                f"none of the rules doctor can read serves {kind} metric {name!r}; it cannot tell what rules "
                f"{', '.join(unread)} serve (a Go-only regex, or a seriesQuery naming no metric): not checked; "
                "the metrics API's link checks what the adapter serves"
            )
        raise Broken(
            f"the HPA asks for {kind} metric {name!r}; the adapter's rules serve {sorted(served) or 'nothing'}",
            "set the chart's autoscaling.metric.name (or externalName, offsetName, or slotUtilization.name) to a "
            "served name, "
            "or add the rule to the adapter's values (adapter-values.yaml)",
        )
    rule = served[name]
    window = re.search(r"\[([0-9a-z]+)\]", rule["metricsQuery"])
    # The HPA's first metric is the request duration, whose window the budget is about.
    walk.budget.setdefault("rate window", window.group(1) if window else "(none in the query)")
    query = _expand(rule, walk, metric)
    if "<<" in query:
        return (
            f"the adapter's query for {name} uses template actions doctor does not fill in "
            "(it knows <<.Series>>, <<.LabelMatchers>> and <<.GroupBy>>): not run; the metrics API's link checks it"
        )
    try:
        result = _prometheus(walk).query(query)
    except PrometheusUnavailable as down:
        adapter = _adapter(walk, kind)
        raise Broken(
            f"{down}, on the adapter's query for {name}",
            f"Prometheus answered the links before this one: the rule's metricsQuery in {adapter['source']} "
            "may be too heavy for it, and the adapter's own queries fail alike",
        ) from None
    except ApiError as error:
        if error.status not in (400, 422):  # a query Prometheus cannot parse, or cannot run
            raise
        adapter = _adapter(walk, kind)
        raise Broken(
            f"Prometheus refuses the adapter's query for {name} (HTTP {error.status}): {error.message}",
            f"fix the rule's metricsQuery in {adapter['source']}; {_restart(adapter['deployment'])}",
        ) from None
    if kind == "External":
        if not result:
            raise Broken(f"the adapter's query for {name} returns nothing", _too_little_data())
        return f"the adapter's query for {name} returns {float(result[0]['value'][1]):.3g}"
    answered = {sample["metric"].get(_label_for(rule, "pod")) for sample in result}
    missing = sorted(set(walk.ready_pods) - answered)
    if missing:
        _recording_loaded(walk, _series(rule), name)
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
    for service in walk.cluster.objects("/apis/apiregistration.k8s.io/v1/apiservices"):
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
        selector = metric.get("selector") or {}
        query = {"labelSelector": describe(selector)} if selector else {}
        items = _metric_values(walk, adapter, f"{base}/{name}", **query)
        if not items:
            raise Broken(f"{group} serves no {name} for selector {describe(selector)}", _too_little_data())
        return f"{group} serves {name} = {items[0]['value']}"
    items = _metric_values(walk, adapter, f"{base}/pods/*/{name}", labelSelector=walk.pod_selector)
    missing = sorted(set(walk.ready_pods) - {item["describedObject"]["name"] for item in items})
    if missing:
        raise Broken(
            f"{group} serves {name} for {len(items)} pods, not for {', '.join(missing)}",
            "the adapter learns of new series at each relist: wait one relist interval "
            f"({walk.budget.get('relist interval')}), then check the adapter's logs",
        )
    return f"{group} serves {name} for every ready pod"


def _metric_values(walk: Walk, adapter: dict, path: str, **query: str) -> list[dict]:
    """The metrics API's values. It answers 404 "could not find the metric" when
    the adapter has not listed the series: its rule and query answered in the
    link before, so what is left is when and what the adapter last read."""
    namespace, name = adapter["metadata"]["namespace"], adapter["metadata"]["name"]
    try:
        return walk.cluster.items(path, **query)
    except ApiError as error:
        if error.status >= 500:  # the adapter's own query or listing failed, as the HPA sees it
            raise Broken(
                f"the metrics API answers {error.status}: {error.message}",
                f"the adapter says why in its log: kubectl -n {namespace} logs deploy/{name}",
            ) from None
        if error.status != 404:
            raise
        raise Broken(
            f"the metrics API answers 404: {error.message}",
            "the adapter serves a series once a relist has seen a sample of it within the last relist interval "
            f"({walk.budget.get('relist interval')}): wait that long and run doctor again; if it lasts, the relist "
            f"interval must be at least the scrape interval ({walk.budget.get('scrape interval')}), and the adapter "
            f"reads its rules only when it starts: kubectl -n {namespace} rollout restart deploy/{name}",
        ) from None


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
    """The findings up to and including the first broken link. What doctor
    cannot read (kube.ApiError) is no finding about the pipeline: the caller's."""
    findings = []
    for link, check in LINKS:
        try:
            findings.append(Finding(link, True, check(walk)))
        except Broken as broken:
            findings.append(Finding(link, False, broken.detail, broken.fix))
            break
        except PrometheusUnavailable as down:
            namespace = _prometheus(walk).namespace
            fix = (
                f"every link from here reads Prometheus: kubectl -n {namespace} get pods "
                "-l app.kubernetes.io/name=prometheus, then their events and log (the Prometheus Operator "
                "creates them and their Service, prometheus-operated: if there is none, read the operator's log)"
            )
            findings.append(Finding(link, False, str(down), fix))
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


def _the_one(walk: Walk, kind: str, found: list[dict]) -> dict | None:
    """The release's object of `kind` among `found`, or None; doctor checks one
    and does not guess which when there are more."""
    if len(found) > 1:
        names = ", ".join(sorted(o["metadata"]["name"] for o in found))
        raise Broken(
            f"{len(found)} {kind}s in namespace {walk.namespace} have the chart's labels {walk.chart_selector}: "
            f"{names}; doctor cannot tell which is the release's",
            f"keep the chart's own and remove or relabel the others: "
            f"kubectl -n {walk.namespace} get {kind.lower()} -l {walk.chart_selector} --show-labels",
        )
    return found[0] if found else None


@contextmanager
def _operator_crds() -> Iterator[None]:
    """Lists of the Prometheus Operator's kinds: a 404 means the cluster has no such kind."""
    try:
        yield
    except ApiError as error:
        if error.status != 404:
            raise
        raise Broken(
            f"the cluster does not serve the Prometheus Operator's monitoring.coreos.com/v1 kinds: {error.message}",
            "install kube-prometheus-stack (with prometheus-values.yaml), which brings the Prometheus Operator "
            "and its CRDs, then helm upgrade the release with serviceMonitor.enabled=true",
        ) from None


def _condition(obj: dict, kind: str) -> str | None:
    return next((c["status"] for c in obj.get("status", {}).get("conditions") or [] if c["type"] == kind), None)


def _labels(labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"


def _selects(prometheus: dict, labels: dict, namespace_labels: dict, namespace: str) -> bool:
    """The operator's rules: an unset serviceMonitorSelector selects nothing, an
    unset namespace selector only the Prometheus's own namespace, and an invalid
    one nothing (the operator refuses to configure that Prometheus)."""
    spec = prometheus["spec"]
    try:
        if spec.get("serviceMonitorSelector") is None or not matches(spec["serviceMonitorSelector"], labels):
            return False
        namespaces = spec.get("serviceMonitorNamespaceSelector")
        if namespaces is None:
            return prometheus["metadata"]["namespace"] == namespace
        return matches(namespaces, namespace_labels)
    except InvalidSelector:
        return False


def _selection(prometheus: dict) -> str:
    """Which ServiceMonitors a Prometheus selects, as the finding that none selects ours names it."""
    selector = prometheus["spec"].get("serviceMonitorSelector")
    if selector is None:
        return "no ServiceMonitor (its selector is unset)"
    try:
        return describe(selector)
    except InvalidSelector as error:
        return f"nothing: its serviceMonitorSelector is invalid, {error}"


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
    for hpa in walk.cluster.objects(f"/apis/autoscaling/v2/namespaces/{walk.namespace}/horizontalpodautoscalers"):
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
    service = walk.cluster.object_or_none(f"/apis/apiregistration.k8s.io/v1/apiservices/{version}.{group}")
    if service is None:
        raise Broken(
            f"no APIService {version}.{group}: nothing serves {kind} metrics",
            "install prometheus-adapter with adapter-values.yaml",
        )
    return service


def _adapter(walk: Walk, kind: str) -> dict:
    """The prometheus-adapter Deployment serving `kind`, where its rules come
    from and what they are: the one behind the metrics APIService's Service, or,
    when that Service is missing (the next link's problem), the one labelled as
    the prometheus-adapter chart labels it."""
    if kind in walk.adapters:
        return walk.adapters[kind]
    deployments = _deployments_behind(walk, _api_service(walk, kind)["spec"].get("service"))
    deployments = deployments or walk.cluster.objects(
        "/apis/apps/v1/deployments", labelSelector="app.kubernetes.io/name=prometheus-adapter"
    )
    if not deployments:
        raise Broken(
            f"no prometheus-adapter Deployment serves {METRICS_API[kind][0]}",
            "install prometheus-adapter with adapter-values.yaml",
        )
    deployment = deployments[0]
    container, flags = _adapter_container(deployment["spec"]["template"]["spec"])
    walk.budget["relist interval"] = flags.get("metrics-relist-interval", f"{RELIST_DEFAULT} (the adapter's default)")
    source, config = _adapter_config(walk, deployment, container, flags.get("config"))
    walk.adapters[kind] = {"deployment": deployment, "source": source, "config": config}
    return walk.adapters[kind]


def _deployments_behind(walk: Walk, service_ref: dict | None) -> list[dict]:
    if not service_ref:
        return []
    namespace = service_ref["namespace"]
    service = walk.cluster.object_or_none(f"/api/v1/namespaces/{namespace}/services/{service_ref['name']}")
    if service is None:
        return []
    selector = {"matchLabels": service["spec"].get("selector") or {}}
    return [
        d
        for d in walk.cluster.objects(f"/apis/apps/v1/namespaces/{namespace}/deployments")
        if selector["matchLabels"] and matches(selector, d["spec"]["template"]["metadata"].get("labels", {}))
    ]


def _adapter_container(pod_spec: dict) -> tuple[dict, dict[str, str]]:
    """The container that runs the adapter, with its `_flags`: the one given a
    --config, else the chart's `prometheus-adapter`, else the first (a sidecar
    may come before it)."""
    flagged = [(c, _flags(c)) for c in pod_spec["containers"]]
    given = [pair for pair in flagged if "config" in pair[1]]
    named = [pair for pair in flagged if pair[0].get("name") == "prometheus-adapter"]
    # A sidecar may take a --config of its own (oauth2-proxy): the chart's name decides first.
    return next((pair for pair in named if pair in given), None) or (given or named or flagged)[0]


def _flags(container: dict) -> dict[str, str]:
    """A container's `--name=value` and `--name value` flags, from its command
    and then its args, the order the kubelet runs them in."""
    words = [*(container.get("command") or []), *(container.get("args") or [])]
    flags = {}
    for word, following in zip(words, [*words[1:], None], strict=True):
        if not word.startswith("--"):
            continue
        name, equals, value = word[2:].partition("=")
        if equals:
            flags[name] = value
        elif following is not None and not following.startswith("-"):
            flags[name] = following
    return flags


def _adapter_config(walk: Walk, deployment: dict, container: dict, path: str | None) -> tuple[str, dict]:
    """The adapter's --config file, as `container` sees it: which ConfigMap key
    it is (for findings), and what it holds."""
    if not path:
        raise Broken(
            "doctor finds no --config flag in prometheus-adapter's command or args (a flag inside a shell script "
            "it cannot read): without one the adapter serves no rules of ours",
            "install prometheus-adapter with adapter-values.yaml",
        )
    path = posixpath.normpath(path)
    namespace, adapter = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    found = _config_map_files(deployment["spec"]["template"]["spec"], container, path)
    if not found:
        raise Broken(
            f"cannot find the ConfigMap behind the adapter's --config={path}",
            "doctor reads the rules from a ConfigMap volume mounted there: "
            f"kubectl -n {namespace} get deploy/{adapter} -o yaml",
        )
    candidates = [(name, key) for name, key in found if key is not None]
    if not candidates:
        raise Broken(
            f"the adapter's --config={path} is on a volume of ConfigMap {namespace}/{found[0][0]} whose items "
            "do not hold it",
            "map the ConfigMap's key to that file in the volume's items: "
            f"kubectl -n {namespace} get deploy/{adapter} -o yaml",
        )
    name, key, held = _holding(walk, namespace, candidates)
    if held is None:
        raise Broken(
            f"ConfigMap {namespace}/{name}, where the adapter's --config={path} comes from, does not exist",
            "install prometheus-adapter with adapter-values.yaml, which creates it",
        )
    data = held
    source = f"ConfigMap {namespace}/{name} key {key}"
    if key not in data:
        raise Broken(
            f"ConfigMap {namespace}/{name} has no key {key}, which the adapter reads as --config={path}",
            f"put the adapter's configuration under {key}; {_restart(deployment)}",
        )
    try:
        config = yaml.safe_load(data[key])
    except yaml.YAMLError as error:
        problem = " ".join(str(error).split())
        raise Broken(f"{source} is not YAML: {problem}", f"fix it; {_restart(deployment)}") from None
    if not isinstance(config, dict):
        raise Broken(
            f"{source} holds no adapter configuration (a mapping with rules, externalRules)",
            f"install prometheus-adapter with adapter-values.yaml; {_restart(deployment)}",
        )
    return source, config


def _holding(walk: Walk, namespace: str, candidates: list[tuple[str, str]]) -> tuple[str, str, dict | None]:
    """The first candidate whose ConfigMap holds its key, which is the file the
    adapter sees; else the first, for the findings to name. With its data
    (None: no such ConfigMap)."""
    first = None
    for name, key in candidates:
        held = _config_map_data(walk, namespace, name)
        if held is not None and key in held:
            return name, key, held
        first = first or (name, key, held)
    assert first is not None, "no candidates"
    return first


def _config_map_data(walk: Walk, namespace: str, name: str) -> dict | None:
    """A ConfigMap's data; None when there is no such ConfigMap."""
    config_map = walk.cluster.object_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    return None if config_map is None else config_map.get("data") or {}


def _config_map_files(pod_spec: dict, container: dict, path: str) -> list[tuple[str, str | None]]:
    """The ConfigMaps of `pod_spec` whose volume `container` may see `path` from, with the
    key that file would be, the kubelet's choice first: of a projected volume's
    sources the later writes over the earlier. A key of None: the volume's items
    leave the file out. Empty when no ConfigMap volume is mounted there. A mount
    shows the whole volume, or with subPath a file or directory of it; the
    volume holds every key as a file, or with items the keys they name, at the
    paths they give."""
    mount = _innermost_mount(container, path)
    if mount is None:
        return []
    mounted = posixpath.normpath(mount["mountPath"])
    file = "." if path == mounted else posixpath.relpath(path, mounted)
    file = posixpath.normpath(posixpath.join(mount.get("subPath") or "", file))
    volume: dict = next((v for v in pod_spec.get("volumes") or [] if v.get("name") == mount["name"]), {})
    found = []
    for source in reversed(_config_map_sources(volume)):
        items = source.get("items")
        key = next((i["key"] for i in items if posixpath.normpath(i["path"]) == file), None) if items else file
        found.append((source["name"], key))
    return found


def _innermost_mount(container: dict, path: str) -> dict | None:
    """The mount the container sees `path` through: of those covering it, the
    deepest, as the runtime mounts them in order of depth."""
    covering = [
        mount
        for mount in container.get("volumeMounts") or []
        for mounted in [posixpath.normpath(mount["mountPath"])]
        if path == mounted or path.startswith(mounted.rstrip("/") + "/")
    ]
    return max(covering, key=lambda mount: len(posixpath.normpath(mount["mountPath"])), default=None)


def _config_map_sources(volume: dict) -> list[dict]:
    """The ConfigMaps a volume shows: its own, or a projected volume's."""
    if "configMap" in volume:
        return [volume["configMap"]]
    sources = (volume.get("projected") or {}).get("sources") or []
    return [source["configMap"] for source in sources if "configMap" in source]


def _restart(deployment: dict) -> str:
    namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    return f"the adapter reads its config only when it starts: kubectl -n {namespace} rollout restart deploy/{name}"


def _rules(walk: Walk, kind: str) -> list[dict]:
    """The adapter's rules for `kind` (Pods: rules, External: externalRules)."""
    adapter = _adapter(walk, kind)
    section = "rules" if kind == "Pods" else "externalRules"
    rules = adapter["config"].get(section) or []
    problems = (
        [f"{section}[{i}] {problem}" for i, rule in enumerate(rules) if (problem := _rule_problem(rule))]
        if isinstance(rules, list)
        else [f"{section} is not a list"]
    )
    if problems:
        raise Broken(f"{adapter['source']}: {problems[0]}", f"fix it; {_restart(adapter['deployment'])}")
    return rules


def _rule_problem(rule: Any) -> str | None:
    """What in `rule` the adapter would refuse, of the fields doctor reads; None when they are sound."""
    if not isinstance(rule, dict):
        return "is not a mapping"
    if not (isinstance(rule.get("seriesQuery"), str) and isinstance(rule.get("metricsQuery"), str)):
        return "needs a seriesQuery and a metricsQuery"
    naming, resources = rule.get("name") or {}, rule.get("resources") or {}
    overrides = resources.get("overrides") or {} if isinstance(resources, dict) else None
    if not (
        isinstance(naming, dict)
        and isinstance(overrides, dict)
        and all(isinstance(o, dict) for o in overrides.values())
    ):
        return "has a name or resources.overrides that is not a mapping"
    if not isinstance(naming.get("matches") or "", str):
        return "has a name.matches that is no string"
    if not isinstance(naming.get("as") or "", str):
        return "has a name.as that is no string"
    pattern = _name_pattern(rule)
    if pattern is not None and pattern.groups > 1 and not naming.get("as"):
        return f"has a name.matches of {pattern.groups} capture groups and no name.as, which the adapter refuses"
    return None


def _name_pattern(rule: dict) -> re.Pattern[str] | None:
    """A rule's name.matches, a Go (RE2) expression, as Python reads it; None
    for one Python cannot (`\\z`, `\\pL`), which the adapter may well serve by."""
    try:
        return re.compile((rule.get("name") or {}).get("matches") or "^.*$")
    except re.error:
        return None


def served_name(rule: dict) -> str | None:
    """The metric name a rule serves: name.as (default `$1` with one capture
    group, `$0` with none; more need one) expanded with name.matches' match on
    its series, as the adapter does (Go's Regexp.ExpandString)."""
    series = _series(rule)
    if series is None:
        return None
    pattern = _name_pattern(rule)
    match = pattern.search(series) if pattern else None
    if pattern is None or match is None:
        return None
    template = (rule.get("name") or {}).get("as") or {0: "$0", 1: "$1"}.get(pattern.groups)
    return (_go_expand(template, match) or None) if template else None  # an empty name serves nothing


# A Go template reference: `$$`, `${name}`, or `$name` with the longest run of
# letters, digits and `_` (so `$1_avg` names group "1_avg", which Go reads as none).
GO_REFERENCE = re.compile(r"\$(?:\$|\{(\w+)\}|(\w+))")


def _go_expand(template: str, match: re.Match[str]) -> str:
    """`template` with each reference to a group of `match` replaced as Go's
    ExpandString does: by number or name; a group that is not there, or did not
    take part, as empty."""

    def group(reference: re.Match[str]) -> str:
        if reference.group(0) == "$$":
            return "$"
        name = reference.group(1) or reference.group(2)
        # A number as Go reads one: ASCII digits, no leading zero ("01" is a name, and none).
        number = name.isascii() and name.isdigit() and (name == "0" or not name.startswith("0"))
        try:
            return match.group(int(name) if number else name) or ""
        except IndexError:
            return ""

    return GO_REFERENCE.sub(group, template)


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
    # `rule` serves the HPA's metric (`served_name`), so its query names a series.
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


def _recording_loaded(walk: Walk, series: str | None, name: str) -> None:
    """A series named level:metric:operations is a recording rule's, never a
    scraped one: no pod has it while Prometheus has not loaded that rule (the
    chart's PrometheusRule, for its offset rule)."""
    if series is None or ":" not in series:
        return
    groups = _prometheus(walk).api("rules", type="record")["groups"]
    if not any(rule.get("name") == series for group in groups for rule in group.get("rules") or []):
        raise Broken(
            f"Prometheus has not loaded the rule that records {series}, which the adapter's query for {name} reads",
            "helm upgrade with prometheusRule.enabled=true, its labels selected by the Prometheus's ruleSelector "
            "(prometheusRule.additionalLabels) in a namespace its ruleNamespaceSelector selects; "
            "the operator then reloads Prometheus within a minute or two",
        )


def _too_little_data() -> str:
    return (
        "a pod has a value once Prometheus holds two samples of it in the window and its latest scrape "
        "succeeded: a new pod, or every pod just after a Prometheus restart, waits two scrapes; "
        "if it lasts, check the targets and the window against the scrape interval"
    )
