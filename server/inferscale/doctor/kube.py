"""Reads for the doctor: the API server's JSON, and Prometheus through it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import config
from kubernetes.client import ApiClient, Configuration


class ApiError(Exception):
    def __init__(self, path: str, status: int, body: str):
        super().__init__(f"GET {path}: HTTP {status}: {body[:300]}")
        self.status = status


class UnexpectedAnswer(Exception):
    """An answer no Kubernetes API server gives: not a JSON object, or one without the fields every object has."""


class Cluster:
    """GETs on the API server with the kubeconfig's identity, decoded from JSON."""

    def __init__(self, api: ApiClient, timeout_seconds: float = 10):
        self.api = api
        self.timeout_seconds = timeout_seconds

    @classmethod
    def from_kubeconfig(
        cls, path: str | None, context: str | None = None, timeout_seconds: float = 10, retry: bool = True
    ) -> Cluster:
        """`retry=False` makes one attempt per read: urllib3 otherwise tries a
        GET that timed out three more times, so a hung server takes four timeouts to be named."""
        settings = Configuration()
        if not retry:
            settings.retries = False
        api = config.new_client_from_config(config_file=path, context=context, client_configuration=settings)
        return cls(api, timeout_seconds)

    def get(self, path: str, **query: str) -> dict[str, Any]:
        method, url, headers, body, post = self.api.param_serialize(
            "GET",
            path,
            query_params=list(query.items()),
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(method, url, headers, body, post, _request_timeout=self.timeout_seconds)
        except urllib3.exceptions.HTTPError as error:
            raise ConnectionError(f"GET {path}: {error}") from error
        data = response.read()
        if response.status >= 400:
            raise ApiError(path, response.status, data.decode(errors="replace"))
        try:
            answer = json.loads(data)
        except ValueError:  # not JSON, or not UTF-8
            raise UnexpectedAnswer(f"GET {path}: not JSON: {data[:100]!r}") from None
        if not isinstance(answer, dict):
            raise UnexpectedAnswer(f"GET {path}: not a JSON object: {data[:100]!r}")
        return answer

    def items(self, path: str, **query: str) -> list[dict[str, Any]]:
        items = self.get(path, **query).get("items")
        if not isinstance(items, list):
            raise UnexpectedAnswer(f"GET {path}: a list without its items")
        return items


class Prometheus:
    """Prometheus's HTTP API through the API server's proxy to its Service."""

    def __init__(self, cluster: Cluster, namespace: str, service: str = "prometheus-operated", port: str = "web"):
        self.cluster = cluster
        self.base = f"/api/v1/namespaces/{namespace}/services/{quote(service)}:{port}/proxy"
        self.address = f"{service}.{namespace}.svc"

    def api(self, path: str, **query: str) -> Any:
        answer = self.cluster.get(f"{self.base}/api/v1/{path}", **query)
        if answer.get("status") != "success":
            raise ApiError(path, 200, json.dumps(answer))
        return answer["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.api("query", query=promql)["result"]
