"""A real Prometheus (the `prometheus` ci/tools.sh builds) for tests: tmp storage, a free
loopback port, the chart's rules, targets labelled as kube-prometheus-stack labels them.

The adapter rules and the chart's recording rules select series by the labels a
ServiceMonitor scrape adds (`namespace`, `service`, `pod`, ...). Here static
target labels add the same ones, so the PromQL under test runs unchanged.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from localcluster.binaries import binary
from localcluster.prometheus_process import Prometheus
from localcluster.servers import free_port

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "chart"


def chart_rule_groups(release: str, namespace: str, values: dict[str, object] | None = None) -> list[dict]:
    """spec.groups of the chart's PrometheusRule, as `helm template` renders it with
    `values` (dotted paths: numbers stay numbers, which `--set` would make text)."""
    sets = [arg for key, value in (values or {}).items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]
    result = subprocess.run(
        [
            binary("helm"),
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--show-only",
            "templates/prometheusrule.yaml",
            *sets,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    rule = yaml.safe_load(result.stdout)
    assert rule["kind"] == "PrometheusRule", result.stdout
    return rule["spec"]["groups"]


@dataclass
class Target:
    """One scraped pod: where its /metrics is and the labels a ServiceMonitor would give it."""

    url: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Sample:
    labels: dict[str, str]
    value: float
    timestamp: float


class QueryError(AssertionError):
    pass


class PrometheusProcess:
    """`prometheus` scraping `targets` every `interval_seconds`, rules evaluated as often."""

    def __init__(
        self,
        workdir: Path,
        targets: list[Target],
        rule_groups: list[dict],
        interval_seconds: int = 1,
        job: str = "inferscale",
    ):
        self.server = Prometheus(workdir, free_port())
        self.url = self.server.url
        self.targets = targets
        self.rule_groups = rule_groups
        self.interval = f"{interval_seconds}s"
        self.job = job

    def start(self, timeout: float = 30.0) -> PrometheusProcess:
        scrape = {
            # The operator names the job after the Service (the chart's, relabelled
            # where the admin port has a Service of its own).
            "job_name": self.job,
            "metrics_path": "/metrics",
            "scrape_timeout": self.interval,
            "static_configs": [
                {"targets": [target.url.removeprefix("http://")], "labels": target.labels} for target in self.targets
            ],
        }
        self.server.write_config(self.interval, [scrape], self.rule_groups)
        check = subprocess.run(
            [binary("promtool"), "check", "config", str(self.server.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, f"promtool check config:\n{check.stdout}{check.stderr}"
        self.server.start(timeout)
        return self

    def stop(self) -> None:
        self.server.stop()

    def log(self) -> str:
        path = self.server.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_targets_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = self.query("up")
            if len(up) == len(self.targets) and all(sample.value == 1 for sample in up):
                return
            time.sleep(0.5)
        raise TimeoutError(f"not every target is up after {timeout} s: {self.query('up')}\n{self.log()}")

    def wait_for_rules_loaded(self, timeout: float = 30.0) -> None:
        """Every group from rule_groups loaded, each evaluated at least once, none failing."""
        deadline = time.monotonic() + timeout
        while True:
            groups = self._api("rules")["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            evaluated = rules and all(rule.get("lastEvaluation", "").startswith("2") for rule in rules)
            if (
                len(groups) == len(self.rule_groups)
                and evaluated
                and not any(rule.get("health") == "err" for rule in rules)
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"rules not loaded and evaluated within {timeout} s: {groups}")
            time.sleep(0.5)

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query through the HTTP API, as prometheus-adapter and the UI send it."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._api("query", params)
        if data["resultType"] != "vector":
            raise QueryError(f"{expr!r} returned a {data['resultType']}, not an instant vector")
        return [Sample(item["metric"], float(item["value"][1]), float(item["value"][0])) for item in data["result"]]

    def raw_samples(self, selector: str, window: str, at: float) -> list[Sample]:
        """The stored samples of one series in (at - window, at]: what rate() sees."""
        data = self._api("query", {"query": f"{selector}[{window}]", "time": f"{at:.3f}"})
        assert data["resultType"] == "matrix", data
        assert len(data["result"]) == 1, f"{selector} matches {len(data['result'])} series"
        series = data["result"][0]
        return [Sample(series["metric"], float(value), float(ts)) for ts, value in series["values"]]

    def _api(self, path: str, params: dict | None = None) -> dict:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise QueryError(f"/api/v1/{path} {params}: {response.status_code} {body.get('error', body)}")
        return body["data"]


def by_label(samples: list[Sample], label: str) -> dict[str, float]:
    values = {}
    for sample in samples:
        key = sample.labels.get(label)
        assert key not in values, f"two samples with {label}={key!r}: {samples}"
        values[key] = sample.value
    return values


def is_number(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
