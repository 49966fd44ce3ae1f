"""An HTTP worker's line to the model process (model_client): a request that
arrives before the line is up waits for it instead of failing.

A gunicorn worker takes connections from its first moment, while its line to
the model process is still being set up; the supervisor restarts a dead model
process within a second or two. Neither is a reason to answer 503.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from inferscale import wire
from inferscale.backend import ModelStatus
from inferscale.errors import InferenceError, ModelUnavailable
from inferscale.metrics import ModelMetrics
from inferscale.model_client import ModelClient
from inferscale.model_process import ModelServer
from inferscale.model_service import InferenceService, model_from_settings
from inferscale.settings import Settings

ROWS = np.array([[1.0, 2.0, 3.0]])


def serve_model(path: str, started: threading.Event, **settings_fields) -> None:
    """A model process's server, in this process, once `started` is set."""
    started.wait()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    settings = Settings(inference_duration_seconds=0, model_load_seconds=0, model_memory_mb=0, **settings_fields)
    server = ModelServer(listener)
    server.service = InferenceService(
        settings, ModelMetrics(CollectorRegistry()), model_from_settings(settings), server.publish
    )
    server.publish(server.service.status())
    server.service.start_loading()
    server.serve_forever()


def test_a_request_before_the_line_is_up_waits_for_it(tmp_path):
    path = str(tmp_path / "model.sock")
    start_model = threading.Event()
    threading.Thread(target=serve_model, args=(path, start_model), daemon=True).start()
    client = ModelClient(path)
    assert not client.status().reachable
    # The model process comes up only after the request was made.
    threading.Timer(0.3, start_model.set).start()
    outcome = client.infer(ROWS)
    assert outcome.value.shape == (1,)
    assert client.status().reachable


def test_no_model_process_at_all_is_still_a_clean_refusal(tmp_path):
    client = ModelClient(str(tmp_path / "nobody-listens.sock"))
    with pytest.raises(ModelUnavailable, match="restarting"):
        client.infer(ROWS)


def test_the_largest_batch_the_settings_allow_crosses_the_line(tmp_path):
    # 256 x 65536 float64 rows are 128 MiB: past msgpack's default 100 MiB
    # buffer, which broke the line and lost every call on it.
    path = str(tmp_path / "model.sock")
    started = threading.Event()
    started.set()
    widest = {"max_batch_size": 256, "max_features": 65536}
    threading.Thread(target=serve_model, args=(path, started), kwargs=widest, daemon=True).start()
    client = ModelClient(path)
    outcome = client.infer(np.ones((256, 65536)))
    assert outcome.value.shape == (256,)
    assert client.infer(ROWS).value.shape == (1,)  # and the line is still up


def test_a_status_is_read_while_a_large_request_waits_to_be_sent(tmp_path):
    """A request larger than the socket's buffer holds the line's send lock
    until the model process reads it. A status (the drain) arriving meanwhile
    must still be read: a reader waiting for that lock stops taking replies,
    and a model process blocked on sending them stops reading the request."""
    path = str(tmp_path / "model.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen()
        client = ModelClient(path)
        line, _ = listener.accept()
        with line:
            line.sendall(wire.status(ModelStatus(loaded=True)))
            # 4 MiB that this model process never reads: the send blocks.
            threading.Thread(target=infer_until_the_line_closes, args=(client,), daemon=True).start()
            time.sleep(0.5)
            line.sendall(wire.status(ModelStatus(loaded=True, draining=True)))
            deadline = time.monotonic() + 5
            while not client.status().draining and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.status().draining, "the status waited behind the blocked send"


def infer_until_the_line_closes(client: ModelClient) -> None:
    with contextlib.suppress(InferenceError):
        client.infer(np.ones((8, 65536)))
