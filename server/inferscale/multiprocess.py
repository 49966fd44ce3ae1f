"""Metrics shared by gunicorn worker processes, with bounded cost under worker recycling.

prometheus_client's multiprocess mode gives each worker its own mmap files and
sums them at scrape time. Left alone, every recycled worker (gunicorn
`max_requests`) leaves its counter and histogram files behind, so a scrape
reads ever more files. When a worker exits we fold its files into one archive
file per type instead: counters keep every count (stay monotonic) and the
number of files stays proportional to the live workers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
ARCHIVED_TYPES = ("counter", "histogram")
LOCK_NAME = ".scrape.lock"
# The files prometheus_client writes (`<type>_<pid>.db`, a gauge's type naming
# its mode) and our archives.
OWN_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_([0-9]+|archive)\.db")


def prepare_directory(path: str) -> None:
    """Create the directory and drop files of a previous run (their pids are gone);
    OSError if it cannot be written, before any process depends on it, or if it
    holds other `.db` files: a scrape reads every one, and they are not ours to delete."""
    os.makedirs(path, exist_ok=True)
    stale = glob.glob(os.path.join(path, "*.db"))
    foreign = sorted(os.path.basename(name) for name in stale if not OWN_FILE.fullmatch(os.path.basename(name)))
    if foreign:
        raise FileExistsError(
            errno.EEXIST,
            f"holds files that are not this server's metrics ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); give it a directory of its own, it empties it at start",
        )
    for name in stale:
        os.remove(name)
    tempfile.TemporaryFile(dir=path).close()


def archive_dead_process(path: str, pid: int) -> None:
    """Remove a dead worker's live gauges; fold its counters and histograms into the archive."""
    mark_process_dead(pid, path)
    with _lock(path, fcntl.LOCK_EX):
        for typ in ARCHIVED_TYPES:
            dead = os.path.join(path, f"{typ}_{pid}.db")
            if os.path.exists(dead):
                _fold_into_archive(path, typ, dead)


def render(path: str) -> tuple[bytes, str]:
    """The text exposition of every process's metrics, read consistently with archiving."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)
    with _lock(path, fcntl.LOCK_SH):
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _fold_into_archive(path: str, typ: str, dead: str) -> None:
    archive = os.path.join(path, f"{typ}_archive.db")
    # Built aside and renamed in: a reader sees the old archive plus the dead
    # file, or the new archive without it, never both and never neither.
    staging = archive + ".staging"
    if os.path.exists(archive):
        shutil.copyfile(archive, staging)
    merged = MmapedDict(staging)
    try:
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(dead):
            current, _ = merged.read_value(key)
            merged.write_value(key, current + value, 0.0)
    finally:
        merged.close()
    os.replace(staging, archive)
    os.remove(dead)


@contextlib.contextmanager
def _lock(path: str, mode: int) -> Iterator[None]:
    with open(os.path.join(path, LOCK_NAME), "a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
