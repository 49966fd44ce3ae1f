"""The metric half of the autoscaling loop, with real processes: gunicorn pods scraped
by a real Prometheus evaluating the chart's rules, under bounded locust load, queried
with the exact PromQL prometheus-adapter sends for the HPA.

One timeline serves every slow test here (module fixture `loop`):
  pod-a (1 worker, 2 slots, 1 s inference, queue 4) and an idle pod-b are scraped every 1 s;
  locust sends pod-a a burst of 5 requests every 4 s for LOAD_SECONDS: each burst is
  answered after 1, 1, 2, 2 and 3 s (queue wait included), so the average is ~1.8 s,
  the queue never overflows and there are no rejections;
  MEASURED_AT, a few seconds before the load ends, has a full rate window of steady load.
Queries evaluated `at=MEASURED_AT` read the same data whenever they run.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml
from prometheus import (
    REPO,
    PrometheusProcess,
    Target,
    by_label,
    chart_rule_groups,
    is_number,
)
from test_locust import locust_env, read_csv, run_locust_headless

from localcluster.binaries import binary
from localcluster.servers import ServerProcess, scrape

NAMESPACE = "test"
RELEASE = "inferscale"  # the chart's fullname is then "inferscale": the `service` label
PODS = ("pod-a", "pod-b")
HPA_METRIC = "inference_request_duration_seconds_avg"
UTILIZATION_METRIC = "inference_slot_utilization"
OFFSET_METRIC = "inference_request_duration_seconds_avg_minus_offset"
# Two slots, so the slot utilization's division by them shows (x / 1 is x).
POD_ENV = {"INFERENCE_DURATION_SECONDS": "1", "MODEL_CONCURRENCY": "2", "MAX_QUEUE": "4"}
# The chart's rules as a release with an HPA offset renders them (x - 0 is x),
# its recording group evaluated as often as these pods are scraped.
OFFSET_SECONDS = 0.4
CHART_VALUES = {
    "autoscaling.durationOffsetSeconds": OFFSET_SECONDS,
    "serviceMonitor.interval": "1s",
    "serviceMonitor.scrapeTimeout": "1s",
}
BURSTY_LOAD = {"LOAD_ARRIVALS": "fixed", "LOAD_BURST": "5", "LOAD_USER_RPS": "0.25"}
# The adapter rules' window is a literal 40s (not parameterised), so the test
# waits it out: LOAD_SECONDS must exceed it plus warm-up, and "idle" comes a
# window after the load ends.
WINDOW_SECONDS = 40
WINDOW = f"{WINDOW_SECONDS}s"
LOAD_SECONDS = 75
MEASURE_BEFORE_END = 5
RECORDING_RULE = f"namespace_pod:inference_request_duration_seconds:avg_rate{WINDOW}"
# Scrapes and rule evaluations, each this often.
SCRAPE_SECONDS = 1


# ---- prometheus-adapter's query, expanded as the adapter expands it ------------------


def adapter_pods_rule(metric: str) -> tuple[dict, str]:
    """The rules.custom entry serving `metric`, and the series name its seriesQuery selects."""
    values = yaml.safe_load((REPO / "adapter-values.yaml").read_text())
    for rule in values["rules"]["custom"]:
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"].strip()).group(0)
        # The adapter names a metric by regexp replacement on the series name (Go's $1 is \1 here).
        as_template = re.sub(r"\$(\d+)", r"\\\1", rule["name"].get("as") or "$1")
        if (
            re.fullmatch(rule["name"]["matches"], series)
            and re.sub(rule["name"]["matches"], as_template, series) == metric
        ):
            return rule, series
    raise AssertionError(f"no rules.custom entry in adapter-values.yaml serves {metric}")


def expand_adapter_query(rule: dict, series: str, namespace: str, pods: tuple[str, ...]) -> str:
    """metricsQuery for a Pods metric request, as pkg/naming/metrics_query.go Build() renders it:
    matchers from the (empty) metric selector, then namespace, then the pods (`=` for one name,
    `=~` joining names with `|` for several), comma-joined with Go's %q quoting; GroupBy is
    the pod resource's label alone."""
    label_for = {override["resource"]: label for label, override in rule["resources"]["overrides"].items()}
    namespace_label, pod_label = label_for["namespace"], label_for["pod"]
    matchers = [f"{namespace_label}={json.dumps(namespace)}"]
    if len(pods) == 1:
        matchers.append(f"{pod_label}={json.dumps(pods[0])}")
    else:
        matchers.append(f"{pod_label}=~{json.dumps('|'.join(pods))}")
    fields = {"Series": series, "LabelMatchers": ",".join(matchers), "GroupBy": pod_label}

    def field(match: re.Match) -> str:
        assert match.group(1) in fields, f"template field {match.group(0)} not supported by this test"
        return fields[match.group(1)]

    return re.sub(r"<<\s*\.(\w+)\s*>>", field, rule["metricsQuery"])


def hpa_query(metric: str = HPA_METRIC) -> str:
    rule, series = adapter_pods_rule(metric)
    return expand_adapter_query(rule, series, NAMESPACE, PODS)


def test_adapter_query_expands_like_prometheus_adapter():
    rule, series = adapter_pods_rule(HPA_METRIC)
    assert series == "inference_request_duration_seconds_count"
    query = expand_adapter_query(rule, series, NAMESPACE, PODS)
    assert "<<" not in query and ">>" not in query, query
    assert 'rate(inference_request_duration_seconds_count{namespace="test",pod=~"pod-a|pod-b"}[40s])' in query
    assert "sum by (pod)" in query, query
    assert 'pod="pod-a"}' in expand_adapter_query(rule, series, NAMESPACE, ("pod-a",))


# ---- the timeline ---------------------------------------------------------------------


class Loop:
    def __init__(
        self, prometheus: PrometheusProcess, pods: dict[str, ServerProcess], csv_prefix: Path, load_ended_at: float
    ):
        self.prometheus = prometheus
        self.pods = pods
        self.csv_prefix = csv_prefix
        self.measured_at = load_ended_at - MEASURE_BEFORE_END
        self.load_ended_at = load_ended_at
        self.idle_since: float | None = None

    def hpa_values(self, at: float, metric: str = HPA_METRIC) -> dict[str, float]:
        return by_label(self.prometheus.query(hpa_query(metric), at=at), "pod")

    def wait_until_pod_a_idle(self) -> float:
        """Poll the HPA query until pod-a reads 0; the time it first did."""
        if self.idle_since is None:
            # The last queued requests finish up to 3 s after locust stops; then a
            # whole window must pass, plus scrape and evaluation slack.
            deadline = self.load_ended_at + 3 + WINDOW_SECONDS + 20
            while True:
                now = time.time()
                values = self.hpa_values(now)
                if values.get("pod-a") == 0:
                    self.idle_since = now
                    break
                assert now < deadline, f"pod-a still reads {values} {now - self.load_ended_at:.0f} s after the load"
                time.sleep(1)
        return self.idle_since


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("loop")
    pods: dict[str, ServerProcess] = {}
    prometheus = None
    try:
        for pod in PODS:
            (workdir / pod).mkdir()
            pods[pod] = ServerProcess(workdir / pod, POD_ENV, workers=1).start()
        # The labels kube-prometheus-stack's ServiceMonitor scrape gives a pod.
        targets = [
            Target(
                server.admin_url,
                {
                    "namespace": NAMESPACE,
                    "service": RELEASE,
                    "pod": pod,
                    "container": "inferscale",
                    "endpoint": "admin",
                },
            )
            for pod, server in pods.items()
        ]
        rules = chart_rule_groups(RELEASE, NAMESPACE, CHART_VALUES)
        prometheus = PrometheusProcess(workdir / "prometheus", targets, rules, SCRAPE_SECONDS)
        (workdir / "prometheus").mkdir()
        prometheus.start()
        prometheus.wait_for_targets_up()
        prometheus.wait_for_rules_loaded()
        result = run_locust_headless(
            pods["pod-a"].url,
            workdir / "load",
            locust_env(**BURSTY_LOAD),
            ["-u", "1", "-r", "1", "-t", f"{LOAD_SECONDS}s"],
            timeout=LOAD_SECONDS + 60,
        )
        load_ended_at = time.time()
        assert result.returncode == 0, result.stdout
        yield Loop(prometheus, pods, workdir / "load", load_ended_at)
    finally:
        if prometheus is not None:
            prometheus.stop()
        for server in pods.values():
            server.stop()


def client_window_average(csv_prefix: Path, start: float, end: float) -> tuple[float, int]:
    """Average response time (s) and count of the requests locust completed in (start, end].

    The history holds one cumulative row per second; sum = average x count, so the
    difference between two rows is exactly the requests completed between them.
    """
    rows = [
        (int(row["Timestamp"]), int(row["Total Request Count"]), float(row["Total Average Response Time"]))
        for row in read_csv(Path(f"{csv_prefix}_stats_history.csv"))
        if row["Name"] == "Aggregated"
    ]

    def at(moment: float):
        before = [row for row in rows if row[0] <= moment]
        assert before, f"no locust history row before {moment}"
        _, count, average_ms = before[-1]
        return count, count * average_ms / 1000

    count_start, sum_start = at(start)
    count_end, sum_end = at(end)
    completed = count_end - count_start
    assert completed > 0, "locust completed nothing in the window"
    return (sum_end - sum_start) / completed, completed


@pytest.mark.prometheus
def test_hpa_metric_equals_what_clients_waited(loop):
    """The adapter's value for the busy pod is the mean request duration callers saw.

    Compared with locust's client-side mean over the same completions: what the HPA
    metric claims to be is "how long a caller waits". The server-side histogram
    (which Prometheus reads) excludes only HTTP parsing and the loopback
    round trip, milliseconds against ~1.8 s, so 10% is a real bound, not slack.
    The window is the stored samples rate() used: (first, last] sample of pod-a.
    """
    values = loop.hpa_values(loop.measured_at)
    assert set(values) == set(PODS), values
    samples = loop.prometheus.raw_samples(
        f'inference_request_duration_seconds_count{{namespace="{NAMESPACE}",pod="pod-a"}}', WINDOW, loop.measured_at
    )
    client_average, completed = client_window_average(loop.csv_prefix, samples[0].timestamp, samples[-1].timestamp)
    assert completed >= 30, completed  # ~50 expected: 5 every 4 s for 40 s
    assert client_average > 1.5, f"the load did not queue (client average {client_average:.2f} s)"
    assert values["pod-a"] == pytest.approx(client_average, rel=0.10), (values, client_average)
    # The load never overflowed the queue, so no rejected request is missing from either side.
    stats = read_csv(Path(f"{loop.csv_prefix}_stats.csv"))
    assert all(int(row["Failure Count"]) == 0 for row in stats), stats


@pytest.mark.prometheus
def test_slot_utilization_is_the_requests_clients_had_open_per_slot(loop):
    """The adapter's slot utilization for the busy pod is what Little's law
    makes of the callers' own figures: requests completed per second times
    their mean duration is the mean number a pod held, here over its two slots.

    Both sides cover the window of stored gauge samples the query averaged.
    The server's gauges leave out only parsing and the loopback round trip,
    and the 40 one-second samples of a 4 s burst cycle average its step
    shape evenly: 15 % is a real bound (the load holds ~2.25, ~1.13 per slot;
    a rule that left out the queue would read ~0.63, one that left out the
    slots, or a pod exporting 1 slot, ~2.25)."""
    values = loop.hpa_values(loop.measured_at, UTILIZATION_METRIC)
    assert values["pod-b"] == 0, values
    samples = loop.prometheus.raw_samples(
        f'inference_in_flight_requests{{namespace="{NAMESPACE}",pod="pod-a"}}', WINDOW, loop.measured_at
    )
    start, end = samples[0].timestamp, samples[-1].timestamp
    client_average, completed = client_window_average(loop.csv_prefix, start, end)
    held_by_clients = completed / (end - start) * client_average
    assert held_by_clients > 1.0, f"the load did not queue ({held_by_clients:.2f} held)"
    slots = int(POD_ENV["MODEL_CONCURRENCY"])
    assert values["pod-a"] == pytest.approx(held_by_clients / slots, rel=0.15), (values, held_by_clients)


@pytest.mark.prometheus
def test_the_offset_metric_is_each_pods_average_less_the_offset_the_chart_records(loop):
    """The chart's HPA with an offset reads this rule at the target less the
    same offset, which the chart's PrometheusRule records for each scraped pod:
    the busy pod reads its average less it, the idle one minus it."""
    offset = OFFSET_SECONDS
    durations = loop.hpa_values(loop.measured_at)
    offsets = loop.hpa_values(loop.measured_at, OFFSET_METRIC)
    assert set(offsets) == set(PODS), offsets
    assert durations["pod-a"] > 1.5, durations
    assert offsets["pod-a"] == pytest.approx(durations["pod-a"] - offset, abs=1e-9), (offsets, durations)
    assert offsets["pod-b"] == -offset, offsets


@pytest.mark.prometheus
def test_idle_pod_reads_zero_never_nan_or_missing(loop):
    values = loop.hpa_values(loop.measured_at)
    assert "pod-b" in values, f"pod-b has no value (the HPA would stop scaling down): {values}"
    assert values["pod-b"] == 0, values


@pytest.mark.prometheus
def test_busy_pod_reads_zero_a_window_after_the_load_stops(loop):
    idle_since = loop.wait_until_pod_a_idle()
    # Not before the window could have emptied: the value came from real data until then.
    assert idle_since >= loop.load_ended_at + WINDOW_SECONDS - 5, idle_since - loop.load_ended_at
    values = loop.hpa_values(idle_since)
    assert values == {"pod-a": 0, "pod-b": 0}, values
    # The rule is evaluated every second: let it catch up with the same data.
    time.sleep(max(0.0, idle_since + 3 - time.time()))
    recorded = by_label(loop.prometheus.query(RECORDING_RULE, at=idle_since + 2), "pod")
    assert recorded == {"pod-a": 0, "pod-b": 0}, recorded


@pytest.mark.prometheus
def test_recording_rule_equals_the_adapter_query(loop):
    """The chart's recorded per-pod average is the HPA's number, sample for sample.

    Both are checked against the stored samples themselves: over one window the
    ratio of two rates scraped together is the ratio of their increases. A rule
    evaluation races the scrape that started just before it (that sample is
    stamped with the scrape's start and stored a few ms later), and Prometheus 3
    often evaluates first: a recorded sample may then be the window's ratio
    without its newest sample. Either way it equals one of the two to the last
    bit, which no other formula would. (Comparing with the query one scrape
    earlier instead failed whenever the older window also lost a sample at its
    start that mattered.)
    """
    selector = f'{RECORDING_RULE}{{namespace="{NAMESPACE}",service="{RELEASE}",pod="pod-a"}}'
    recorded = loop.prometheus.raw_samples(selector, "15s", loop.measured_at)
    assert len(recorded) >= 10, recorded  # evaluated every second
    for sample in recorded:
        whole, without_newest = stored_averages(loop, sample.timestamp)
        assert loop.hpa_values(sample.timestamp)["pod-a"] == pytest.approx(whole, rel=1e-9)
        assert sample.value in (pytest.approx(whole, rel=1e-9), pytest.approx(without_newest, rel=1e-9)), (
            sample,
            whole,
            without_newest,
        )
    idle = by_label(loop.prometheus.query(RECORDING_RULE, at=loop.measured_at), "pod")
    assert idle["pod-b"] == 0, idle


def stored_averages(loop, at: float) -> tuple[float, float]:
    """pod-a's average request duration over the window ending `at`, from its stored
    samples: with every sample, and without the newest."""
    labels = f'{{namespace="{NAMESPACE}",service="{RELEASE}",pod="pod-a"}}'
    sums, counts = (
        [s.value for s in loop.prometheus.raw_samples(f"inference_request_duration_seconds_{part}{labels}", WINDOW, at)]
        for part in ("sum", "count")
    )
    assert len(sums) == len(counts) >= 3, (sums, counts)

    def average(last: int) -> float:
        answered = counts[last] - counts[0]
        return (sums[last] - sums[0]) / answered if answered else 0.0

    return average(-1), average(-2)


# ---- docs/promql.md -------------------------------------------------------------------


def documented_queries() -> list[str]:
    text = (REPO / "docs" / "promql.md").read_text()
    region = text.split("<!-- promql:start -->", 1)[1].split("<!-- promql:end -->", 1)[0]
    return [query.strip() for query in re.findall(r"```promql\n(.*?)```", region, re.S)]


def test_documented_queries_cover_what_an_operator_needs():
    queries = "\n".join(documented_queries())
    for needed in (
        "inference_request_duration_seconds_sum",  # average duration per pod: the HPA metric
        "inference_model_slots",  # slot utilization: the HPA's second metric
        "namespace_pod:inference_request_duration_seconds:hpa_offset",  # the HPA metric through an offset
        "inference_request_duration_seconds_bucket",  # p95
        "inference_requests_total",  # RPS by status, error and rejection ratio
        "inference_queue_depth",
        "inference_in_flight_requests",
        "inference_duration_seconds_sum",  # model compute
        "inference_queue_wait_seconds_sum",  # queue wait
    ):
        assert needed in queries, f"docs/promql.md has no query over {needed}"


@pytest.mark.prometheus
@pytest.mark.parametrize("number", range(len(documented_queries())))
def test_documented_query_returns_data(loop, number):
    query = documented_queries()[number]
    samples = loop.prometheus.query(query, at=loop.measured_at)
    assert samples, f"no data for the documented query:\n{query}"
    assert all(is_number(sample.value) for sample in samples), (query, samples)


@pytest.mark.prometheus
def test_web_ui_is_served_with_every_asset_it_loads(loop):
    """The UI users paste docs/promql.md's queries into: its page and each script and
    stylesheet it loads come from the binary (ci/tools.sh embeds the UI build)."""
    page = requests.get(f"{loop.prometheus.url}/query", timeout=10)
    assert page.status_code == 200 and '<div id="root">' in page.text, page.text[:500]
    # Linked relative to the page (./assets/...), which sits at the root.
    assets = re.findall(r'(?:src|href)="\.(/assets/[^"]+\.(?:js|css))"', page.text)
    assert any(asset.endswith(".js") for asset in assets), page.text[:1000]
    for asset in assets:
        served = requests.get(loop.prometheus.url + asset, timeout=10)
        assert served.status_code == 200 and len(served.content) > 1000, (asset, served.status_code)
    build = requests.get(f"{loop.prometheus.url}/api/v1/status/buildinfo", timeout=10).json()["data"]
    assert build["version"] == "3.14.0", build


# ---- exposition -----------------------------------------------------------------------


def test_metrics_page_passes_promtool_check_after_traffic(start_server):
    # One slot, no queue: of 3 simultaneous requests one is served, the others rejected.
    server = start_server({"INFERENCE_DURATION_SECONDS": "0.5", "MODEL_CONCURRENCY": "1", "MAX_QUEUE": "0"}, workers=1)
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(server.predict().status_code)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    v2 = requests.post(
        server.url + "/v2/models/inferscale/infer",
        json={"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]},
        timeout=30,
    )
    assert sorted(statuses) == [200, 503, 503] and v2.status_code == 200, (statuses, v2.text)
    samples = scrape(server.admin_url)
    assert samples['inference_requests_total{status="success"}'] == 2, samples
    assert samples['inference_requests_total{status="rejected"}'] == 2, samples
    assert 'inference_requests_total{status="error"}' in samples, samples
    assert samples["inference_request_duration_seconds_count"] == 2, samples

    page = requests.get(server.admin_url + "/metrics", timeout=10).text
    result = subprocess.run(
        [binary("promtool"), "check", "metrics"], input=page, capture_output=True, text=True, timeout=60
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0 and not report, f"promtool check metrics:\n{report}\n--- /metrics ---\n{page}"
