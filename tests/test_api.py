"""The protocol layer in process: shapes, status codes and JSON errors for every bad input;
and, on a real server, the values of the metrics the autoscaling reads."""

from __future__ import annotations

import time

import pytest

from inferscale.app import create_app
from inferscale.runtime import runtime_of
from inferscale.settings import Settings

FAST = dict(
    model_load_seconds=0,
    model_memory_mb=1,
    inference_duration_seconds=0,
    max_features=8,
    max_batch_size=4,
    max_body_bytes=4096,
)


def make_client(**overrides):
    app = create_app(Settings(**{**FAST, **overrides}))
    backend = runtime_of(app).backend
    deadline = time.monotonic() + 10
    while not backend.status().loaded:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return app.test_client()


@pytest.fixture
def client():
    return make_client()


def test_predict_returns_a_probability_with_timings(client):
    response = client.post("/predict", json={"features": [0.5, -1, 2]})
    assert response.status_code == 200
    body = response.get_json()
    assert 0 < body["prediction"] < 1
    assert body["model"] == "inferscale"
    assert body["inference_seconds"] >= 0 and body["queue_seconds"] >= 0


def test_same_features_give_the_same_prediction_in_separate_apps():
    first = make_client().post("/predict", json={"features": [1, 2]}).get_json()["prediction"]
    second = make_client().post("/predict", json={"features": [1, 2]}).get_json()["prediction"]
    assert first == second


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "Invalid JSON"),
        (b"", "Invalid JSON"),
        (b'{"features": []}', "at least 1 item"),
        (b'{"features": ["1"]}', "valid number"),
        (b'{"features": [true]}', "valid number"),
        (b'{"features": [NaN]}', "finite number"),
        (b'{"features": 3}', "valid array"),
        (b'{"feature": [1]}', "features"),
        (b"[1, 2]", "should be an object"),
        (b"[" * 3000, "recursion limit"),
    ],
)
def test_malformed_predict_bodies_get_400_naming_the_problem(client, body, fragment):
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    assert fragment in error["message"]


def test_too_many_features_is_400(client):
    response = client.post("/predict", json={"features": [1] * 9})
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == "9 features per row; this model accepts at most 8"


def test_oversized_body_is_413(client):
    response = client.post("/predict", data=b'{"features": [' + b"1," * 4000 + b"1]}", content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"


def test_wrong_content_type_is_415(client):
    response = client.post("/predict", data='{"features": [1]}', content_type="text/plain")
    assert response.status_code == 415
    assert "application/json" in response.get_json()["error"]["message"]


def test_a_compressed_predict_body_is_415_as_on_v2(client):
    response = client.post(
        "/predict", data='{"features": [1]}', content_type="application/json", headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 415
    assert "Content-Encoding 'gzip'" in response.get_json()["error"]["message"]


def test_wrong_method_is_405_with_allow_header(client):
    response = client.get("/predict")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_unknown_route_is_json_404(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_ready_reports_loading_until_the_model_is_loaded():
    app = create_app(Settings(**{**FAST, "model_load_seconds": 0.5}))
    client = app.test_client()
    assert client.get("/ready").status_code == 503
    assert client.get("/ready").get_json() == {"status": "loading"}
    assert client.get("/v2/models/inferscale/ready").status_code == 503
    assert client.get("/health").status_code == 200
    time.sleep(1.0)
    assert client.get("/ready").status_code == 200


def test_metrics_follow_the_contract(client):
    client.post("/predict", json={"features": [1]})
    client.post("/predict", json={"features": []})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'inference_requests_total{status="success"} 1.0' in text
    assert 'inference_requests_total{status="error"} 0.0' in text
    assert 'inference_requests_total{status="rejected"} 0.0' in text
    assert "inference_request_duration_seconds_count 1.0" in text
    for name in (
        "inference_duration_seconds_bucket",
        "inference_queue_wait_seconds_bucket",
        "inference_in_flight_requests 0.0",
        "inference_queue_depth 0.0",
        "inference_model_ready 1.0",
    ):
        assert name in text


def test_the_metrics_the_autoscaling_reads_hold_the_slots_and_every_requests_time(start_server):
    """Values, not only names: the slot count the utilization is divided by, and
    the duration histograms the HPA's average is their sum over their count."""
    from localcluster.servers import scrape

    duration, sent = 0.1, 5
    server = start_server(
        {"MODEL_CONCURRENCY": "3", "INFERENCE_DURATION_SECONDS": str(duration), "INFERENCE_JITTER_SECONDS": "0"}
    )
    for _ in range(sent):
        assert server.predict().status_code == 200
    metrics = scrape(server.admin_url)
    assert metrics["inference_model_slots"] == 3
    for histogram in ("inference_duration_seconds", "inference_request_duration_seconds"):
        assert metrics[f"{histogram}_count"] == sent, histogram
        # A sleep never ends early; above, a bound loose enough for a busy machine.
        assert sent * duration <= metrics[f"{histogram}_sum"] < sent * duration + 10, histogram


def test_model_failure_is_a_json_500_counted_as_error(client, monkeypatch):
    model = runtime_of(client.application).backend.model

    def broken(rows):
        raise RuntimeError("accelerator fell over")

    monkeypatch.setattr(model, "_spend", broken)
    response = client.post("/predict", json={"features": [1]})
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "inference_failed"
    text = client.get("/metrics").get_data(as_text=True)
    assert 'inference_requests_total{status="error"} 1.0' in text
