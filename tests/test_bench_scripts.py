"""Every benchmark script still starts. They are run by hand, so nothing else
would notice one broken by a change elsewhere (an import, a renamed option)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
# Not scripts: KServe's side of vs_kserve.py (runs in KServe's own venv) and
# metrics_under_load.py's baseline app (imported by gunicorn).
HELPERS = {"kserve_model.py", "naive_app.py"}
SCRIPTS = sorted(path.name for path in BENCH.glob("*.py") if path.name not in HELPERS)


def test_the_helpers_still_exist():
    assert HELPERS <= {path.name for path in BENCH.glob("*.py")}


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_imports_and_parses_its_options(script):
    result = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
