"""Offered load: a rate over time, and arrivals drawn from it as the locustfile sends them.

Both arrival kinds are open sources, as the locustfile's users are: a request
leaves on schedule however slowly the last one is answered.

- "paced" (LOAD_ARRIVALS=fixed): rate / user_rps users, each sending every
  1 / user_rps s from a random phase. Per period every user sends once, so
  the count per period is exact and only the positions vary.
- "poisson" (the locustfile's default): exponential gaps. Superposed Poisson
  users are one Poisson process of the total rate, drawn here by thinning
  so that the rate may change at any time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Rate = Callable[[float], float]


@dataclass(frozen=True)
class Shape:
    """A named rate over time (requests/s) and its peak, for thinning."""

    name: str
    rate: Rate
    peak: float


def step(before: float, after: float, at: float) -> Shape:
    return Shape(
        f"step {before:g} -> {after:g} req/s at {at:g} s", lambda t: after if t >= at else before, max(before, after)
    )


def ramp(start: float, end: float, begin: float, seconds: float) -> Shape:
    def rate(t: float) -> float:
        fraction = min(max((t - begin) / seconds, 0.0), 1.0)
        return start + (end - start) * fraction

    return Shape(f"ramp {start:g} -> {end:g} req/s over {seconds:g} s", rate, max(start, end))


def spike(base: float, peak: float, at: float, seconds: float) -> Shape:
    return Shape(
        f"spike {base:g} -> {peak:g} req/s for {seconds:g} s",
        lambda t: peak if at <= t < at + seconds else base,
        max(base, peak),
    )


def sine(low: float, high: float, period: float) -> Shape:
    """A daily-like cycle: low at t = 0, high half a period later."""
    middle, amplitude = (high + low) / 2, (high - low) / 2
    return Shape(
        f"sine {low:g}..{high:g} req/s, period {period:g} s",
        lambda t: middle - amplitude * math.cos(2 * math.pi * t / period),
        high,
    )


def stop(rate: float, at: float) -> Shape:
    return step(rate, 0.0, at)


def poisson_arrivals(shape: Shape, end: float, rng: random.Random) -> Iterator[float]:
    if shape.peak <= 0:
        return
    t = 0.0
    while True:
        t += rng.expovariate(shape.peak)
        if t >= end:
            return
        if rng.random() * shape.peak < shape.rate(t):
            yield t


def paced_arrivals(shape: Shape, end: float, rng: random.Random, user_rps: float) -> Iterator[float]:
    period = 1.0 / user_rps
    phases: list[float] = []
    start = 0.0
    while start < end:
        users = round(shape.rate(start) / user_rps)
        while len(phases) < users:
            phases.append(rng.uniform(0, period))
        del phases[users:]
        for t in sorted(start + phase for phase in phases):
            if t < end:
                yield t
        start += period


def arrivals(kind: str, shape: Shape, end: float, rng: random.Random, user_rps: float = 0.2) -> Iterator[float]:
    """Arrival times in [0, end), ascending."""
    if kind == "poisson":
        return poisson_arrivals(shape, end, rng)
    if kind == "paced":
        return paced_arrivals(shape, end, rng, user_rps)
    raise ValueError(f"arrivals must be 'paced' or 'poisson', not {kind!r}")
