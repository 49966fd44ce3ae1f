"""Prometheus as a host process on a loopback port, from a configuration its
caller writes: for the metric tests (static targets labelled as a
ServiceMonitor scrape labels them) and the benchmarks. The loop's own
Prometheus is the operator's (monitoring.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from localcluster.binaries import binary
from localcluster.processes import ManagedProcess


class Prometheus:
    """The prometheus binary ci/tools.sh built, on a loopback port, from a config this class writes."""

    def __init__(self, workdir: Path, port: int):
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{port}"
        self.config_path = workdir / "prometheus.yml"
        self.log_path = workdir / "prometheus.log"
        self._port = port
        self._process: ManagedProcess | None = None

    def write_config(self, interval: str, scrape_configs: list[dict], rule_groups: list[dict]) -> None:
        """Scrape and evaluate every `interval` (rules at the scrape pace, like the stack's values)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        rules_path = self.workdir / "rules.yaml"
        rules_path.write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(rules_path)],
            "scrape_configs": scrape_configs,
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self, timeout: float = 60) -> None:
        self._process = ManagedProcess(
            "prometheus",
            [
                binary("prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self._port}",
                "--storage.tsdb.retention.time=1d",
            ],
            self.log_path,
        )
        self._process.start()
        self._process.wait_http_ok(self.url + "/-/ready", timeout)

    def stop(self) -> None:
        if self._process:
            self._process.stop()
