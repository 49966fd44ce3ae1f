"""Folding a dead worker's metric files into the archive loses no count."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from inferscale import multiprocess


def record_in_child(directory, script: str) -> int:
    """Run `script` in a fresh interpreter in multiprocess mode; returns its pid."""
    code = (
        textwrap.dedent(
            """
        import os
        from prometheus_client import CollectorRegistry
        from inferscale.metrics import ModelMetrics, RequestMetrics
        metrics = RequestMetrics(CollectorRegistry())
        model = ModelMetrics(CollectorRegistry())
        """
        )
        + textwrap.dedent(script)
        + "\nprint(os.getpid())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(result.stdout.strip())


def exposition(directory) -> str:
    return multiprocess.render(str(directory))[0].decode()


def test_archiving_dead_workers_keeps_every_count_and_drops_their_files(tmp_path):
    multiprocess.prepare_directory(str(tmp_path))
    script = """
        metrics.answered("success", 2.0)
        metrics.answered("success", 4.0)
        metrics.rejected()
        model.in_flight.inc()
        model.model_ready.set(1)
    """
    first = record_in_child(tmp_path, script)
    before = exposition(tmp_path)
    multiprocess.archive_dead_process(str(tmp_path), first)
    second = record_in_child(tmp_path, script)
    multiprocess.archive_dead_process(str(tmp_path), second)

    after = exposition(tmp_path)
    assert 'inference_requests_total{status="success"} 2.0' in before
    assert 'inference_requests_total{status="success"} 4.0' in after
    assert 'inference_requests_total{status="rejected"} 2.0' in after
    assert "inference_request_duration_seconds_sum 12.0" in after
    assert 'inference_request_duration_seconds_bucket{le="5.0"} 4.0' in after
    # Live gauges of the dead are gone.
    assert "inference_in_flight_requests " not in after and "inference_model_ready " not in after
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]


def test_prepare_directory_clears_files_of_a_previous_run(tmp_path):
    for name in ("counter_123.db", "gauge_livemostrecent_45.db", "histogram_archive.db", "notes.txt"):
        (tmp_path / name).write_bytes(b"stale")
    multiprocess.prepare_directory(str(tmp_path))
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_a_directory_holding_other_databases_is_refused_and_left_alone(tmp_path):
    """PROMETHEUS_MULTIPROC_DIR pointed at a directory in use (an app's sqlite
    files): a scrape would try to read them, and emptying it would delete them."""
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "users.db").write_bytes(b"someone's data")
    with pytest.raises(FileExistsError, match=r"not this server's metrics \(users\.db\)"):
        multiprocess.prepare_directory(str(tmp_path))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["counter_123.db", "users.db"]
