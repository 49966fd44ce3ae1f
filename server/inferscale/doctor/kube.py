"""Reads for the doctor: the API server's JSON, and Prometheus through it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

# The cluster-scoped kinds doctor reads; every other kind it reads is namespaced.
CLUSTER_SCOPED = {"namespaces", "apiservices"}


class ApiError(Exception):
    """An error status: what doctor could not read, and what the server said (`reason`:
    the status line's phrase, which HTTP/2 answers lack)."""

    def __init__(self, path: str, status: int, body: str, reason: str = ""):
        self.status = status
        answer = _json_object(body)
        self.message = _message(body, answer)
        # Prometheus's own error (its API's JSON), not the API server's proxy's.
        self.from_prometheus = answer.get("status") == "error"
        verb, what = _request(path)
        said = f" ({self.message})" if self.message and self.message != reason else ""
        text = f"cannot read {what}: HTTP {status} {reason}".rstrip() + said
        if self.from_prometheus:  # it let doctor through, and refused the query
            text = f"Prometheus refused doctor's query: HTTP {status} {reason}".rstrip() + said
        # Advice on the kubeconfig only for the API server's own refusal (a Status):
        # a service behind its proxy (an auth proxy before Prometheus) may refuse too.
        if answer.get("kind") == "Status":
            text += _advice(status, verb)
        super().__init__(text)


class PrometheusUnavailable(Exception):
    """Prometheus does not answer its API: no Service or no pod behind the API
    server's proxy (404, 502, 503, 504), or its own error for a query (a
    timeout). A link of the pipeline down, not a cluster doctor cannot read."""


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
            # The body is read here, not in call_api: a server that stalls mid-body times out here.
            data = response.read()
        except urllib3.exceptions.HTTPError as error:
            raise ConnectionError(f"GET {path}: {error}") from error
        except ApiException as error:
            # The client's wrapping of urllib3's SSLError: a CA that did not sign the
            # server's certificate, or a client certificate the server refused.
            reason = str(error.reason).replace("\n", ": ")
            raise ConnectionError(
                f"GET {path}: TLS failed: {reason} "
                "(check the kubeconfig's certificate-authority and client certificate)"
            ) from error
        if response.status >= 400:
            raise ApiError(path, response.status, data.decode(errors="replace"), response.reason)
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

    def object(self, path: str) -> dict[str, Any]:
        """A Kubernetes object: it has its metadata, and the doctor reads its name from there."""
        return _named(path, self.get(path))

    def object_or_none(self, path: str) -> dict[str, Any] | None:
        """`object`, or None when the API server answers 404: there is no such object (or kind)."""
        try:
            return self.object(path)
        except ApiError as error:
            if error.status != 404:
                raise
            return None

    def objects(self, path: str, **query: str) -> list[dict[str, Any]]:
        """A list of Kubernetes objects, each with its metadata (metric values have none: `items`)."""
        return [_named(path, item) for item in self.items(path, **query)]


class Prometheus:
    """Prometheus's HTTP API through the API server's proxy to its Service."""

    def __init__(self, cluster: Cluster, namespace: str, service: str = "prometheus-operated", port: str = "web"):
        self.cluster = cluster
        self.namespace = namespace
        self.base = f"/api/v1/namespaces/{namespace}/services/{quote(service)}:{port}/proxy"
        self.address = f"{service}.{namespace}.svc"

    def api(self, path: str, **query: str) -> Any:
        full = f"{self.base}/api/v1/{path}"
        try:
            answer = self.cluster.get(full, **query)
        except ApiError as error:
            if error.from_prometheus and error.status >= 500:
                raise PrometheusUnavailable(
                    f"Prometheus ({self.address}) fails: HTTP {error.status} ({error.message})"
                ) from error
            if error.from_prometheus or error.status not in (404, 502, 503, 504):
                raise  # what doctor asked was refused (400, 422), or doctor may not ask (401, 403)
            raise PrometheusUnavailable(
                f"Prometheus ({self.address}) does not answer through the API server's proxy: "
                f"HTTP {error.status} ({error.message})"
            ) from error
        if answer.get("status") != "success":
            raise ApiError(full, 200, json.dumps(answer), "OK")
        return answer["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.api("query", query=promql)["result"]


def _named(path: str, item: Any) -> dict[str, Any]:
    if not (isinstance(item, dict) and isinstance(item.get("metadata"), dict) and item["metadata"].get("name")):
        raise UnexpectedAnswer(f"GET {path}: an object without metadata.name")
    return item


def _json_object(body: str) -> dict[str, Any]:
    """An error body as the JSON object it should be; empty when it is not one (a proxy's HTML)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _message(body: str, answer: dict[str, Any]) -> str:
    """The server's own words: a Kubernetes Status's message, Prometheus's error, else the body's start."""
    said = answer.get("message") or answer.get("error")
    if isinstance(said, str):
        return said
    return " ".join(body.split())[:300]


def _advice(status: int, verb: str) -> str:
    if status == 401:
        return ": the API server refused the kubeconfig's credentials: renew them (an expired token or certificate?)"
    if status == 403:
        return f": the kubeconfig's identity needs the verb {verb} on it (docs/operations.md lists what doctor reads)"
    return ""


def _request(path: str) -> tuple[str, str]:
    """The verb and the resource the API server authorizes a GET of `path` as:
    ('list', 'deployments in API group apps in namespace web'), ('get', 'namespaces web')."""
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return "get", path  # not a resource path (/version)
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    scope = ""
    if len(rest) > 2 and rest[0] == "namespaces":
        scope, rest = f" in namespace {rest[1]}", rest[2:]
    elif rest and rest[0] not in CLUSTER_SCOPED:
        scope = " in every namespace"  # a namespaced kind listed cluster-wide needs a ClusterRole
    resource = "/".join(rest[:1] + rest[2:3])  # resource[/subresource]: services/proxy, pods/<metric>
    name = f" {rest[1]}" if len(rest) > 1 else ""
    in_group = f" in API group {group}" if group else ""
    return ("get" if name else "list"), f"{resource}{name}{in_group}{scope}"
