"""The project's own files, which the harness drives: it runs from the
repository's checkout (`make venv` installs it editable), never from an index."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "locustfile.py"
# A locust plugin that logs when each request was sent (bench/calibrate.py replays them).
ARRIVAL_LOG_PLUGIN = REPO / "bench" / "arrival_log.py"
