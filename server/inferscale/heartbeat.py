"""Proof that the model process's interpreter still runs, for the supervisor to read.

A model process can be alive and wedged: a native call that holds the GIL, a
process stopped by a signal. Its HTTP workers then wait on it forever while
/ready says 200, since nothing has died. A thread of the model process stamps
the time here every `interval_for(watchdog)` seconds; the stamp stops with
the interpreter, whatever the cause, and the supervisor kills a process whose
stamp is too old. The page is shared memory mapped before the fork, so the
stamp costs no system call on either side, and CLOCK_MONOTONIC is the same
clock in every process.
"""

from __future__ import annotations

import mmap
import struct
import threading
import time

_STAMP = struct.Struct("d")


def interval_for(watchdog_seconds: float) -> float:
    """Beats a tenth of the watchdog apart (at most 1 s): a stamp is never
    much older than the time the process has not run."""
    return min(1.0, watchdog_seconds / 10)


class Heartbeat:
    def __init__(self) -> None:
        # Anonymous and MAP_SHARED: every process forked after this sees one page.
        self._page = mmap.mmap(-1, mmap.PAGESIZE)
        self.beat()

    def beat(self) -> None:
        _STAMP.pack_into(self._page, 0, time.monotonic())

    def last(self) -> float:
        """When the last beat was, on `time.monotonic()`'s clock."""
        return _STAMP.unpack_from(self._page, 0)[0]

    def keep_beating(self, interval: float) -> None:
        """Beat from a thread of this process for as long as its interpreter runs."""
        threading.Thread(target=self._beat_forever, args=(interval,), name="heartbeat", daemon=True).start()

    def close(self) -> None:
        """For a process that must never beat (it would hide a wedged model)."""
        self._page.close()

    def _beat_forever(self, interval: float) -> None:
        while True:
            self.beat()
            time.sleep(interval)
