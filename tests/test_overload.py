"""Ten times more requests than the pod can serve: it refuses the surplus in milliseconds and holds steady.

The ten-minute version with its figures is bench/overload.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from localcluster.overload import OpenLoad, ProcessUse, percentile

INFERENCE, SLOTS, QUEUE = 5.0, 2, 4
CAPACITY = SLOTS / INFERENCE  # requests per second


@pytest.mark.slow
def test_overload_refuses_fast_and_leaks_nothing(start_server):
    server = start_server(
        {
            "INFERENCE_DURATION_SECONDS": str(INFERENCE),
            "MODEL_CONCURRENCY": str(SLOTS),
            "MAX_QUEUE": str(QUEUE),
            "LOG_LEVEL": "warning",
        },
        workers=2,
    )
    # Warm up, then offer the same overload twice: a leak grows every round. Its
    # anonymous memory, not its RSS: a worker that first takes a rare code path in
    # the second round reads ~3 MiB more library pages (CI saw 50.2 -> 53.6 MiB).
    with OpenLoad(server.url, rate=10 * CAPACITY, callers=32):
        time.sleep(10)
    resting = at_rest(server)
    first_round, first_rest = overload_round(server)
    second_round, rested = overload_round(server)
    answers = second_round.answers

    assert set(answers) <= {200, 503}, {status: len(v) for status, v in answers.items()}
    refused, served = answers.get(503, []), answers.get(200, [])
    assert len(refused) > 5 * len(served) > 0
    # A refusal that waited for a slot would take a whole 5 s inference. Measured
    # by a client on a possibly busy machine: the milliseconds are the
    # benchmark's (bench/overload.py); this bound only tells waiting from not.
    assert percentile(refused, 99) < 2.5, percentile(refused, 99)
    # Admitted requests wait at most a full queue: (QUEUE / SLOTS + 1) inferences.
    assert max(served) < (QUEUE / SLOTS + 1) * INFERENCE + 1.5
    assert set(rested.rss_kib) == set(resting.rss_kib), "a process was restarted"
    for pid in resting.rss_kib:
        assert rested.fds[pid] <= resting.fds[pid], ("fds", pid, resting.fds[pid], rested.fds[pid])
        assert rested.threads[pid] <= resting.threads[pid], ("threads", pid)
        for before, after in ((first_round.use, second_round.use), (first_rest, rested)):
            assert after.anon_kib[pid] < before.anon_kib[pid] * 1.02 + 1024, ("anon", after.names[pid])


@dataclass(frozen=True)
class Round:
    answers: dict[int, list[float]]
    use: ProcessUse  # near the end of the round, with the load still on


def overload_round(server) -> tuple[Round, ProcessUse]:
    """20 s of ten times the capacity, then what the processes hold at rest."""
    with OpenLoad(server.url, rate=10 * CAPACITY, callers=32) as load:
        time.sleep(20)
        use = ProcessUse.of(server)
        answers = load.answers.take()
        assert load.backlog < 5, "the load generator fell behind; the test proves nothing"
    return Round(answers, use), at_rest(server)


def at_rest(server) -> ProcessUse:
    """Once the admitted requests have finished and idle connections closed."""
    time.sleep((QUEUE / SLOTS + 1) * INFERENCE + 1)
    return ProcessUse.of(server)
