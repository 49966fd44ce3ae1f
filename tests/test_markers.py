"""The markers select what `make test-fast` leaves out, so a test that starts a
control plane, a Prometheus or the image without its marker must fail, here and
on every machine (tests/conftest.py)."""

from __future__ import annotations

import pytest
from conftest import require

from localcluster import ControlPlane, free_port
from localcluster.prometheus_process import Prometheus


def test_an_unmarked_test_may_not_start_a_control_plane(tmp_path):
    with pytest.raises(RuntimeError, match=r"test_markers\.py::\S+ needs @pytest\.mark\.cluster"):
        ControlPlane(tmp_path).start()
    assert not (tmp_path / "pki").exists(), "the guard must refuse before anything starts"


def test_an_unmarked_test_may_not_start_prometheus(tmp_path):
    with pytest.raises(RuntimeError, match=r"needs @pytest\.mark\.prometheus"):
        Prometheus(tmp_path, free_port()).start()


def test_an_unmarked_test_may_not_build_or_run_the_image():
    # Through the check the image_archive fixture makes, not the fixture itself:
    # a session fixture an `image` test already built answers from its cache.
    with pytest.raises(RuntimeError, match=r"needs @pytest\.mark\.image"):
        require("image")


@pytest.mark.image
def test_a_marked_test_passes_the_check():
    require("image")
