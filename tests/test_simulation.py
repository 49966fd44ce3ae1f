"""The simulator: the HPA controller's arithmetic case by case, and the loop's accounting.

The controller cases are worked by hand from kube-controller-manager v1.33's
replica_calculator.go and horizontal.go (see inferscale/simulation/hpa.py).
"""

from __future__ import annotations

import json
import random
import re
import statistics
import subprocess
import sys
from dataclasses import replace

import pytest
import yaml
from prometheus import REPO

from inferscale.simulation import load
from inferscale.simulation.calibration import (
    Agreement,
    Observed,
    agreement,
    as_trace,
    back_to_min_observed,
    median_agreement,
    median_observed_replicas,
    mid_rank,
    observed_ready_lags,
    readings_to_first_scale_up,
    ready_lags,
    seed_ranges,
    share_over,
    simulated_ready_lags,
    syncs_to_first_scale_up,
    within_seeds,
)
from inferscale.simulation.chart_values import Autoscaling, coalesced, seconds
from inferscale.simulation.figures import (
    HOLD_SECONDS,
    REFUSAL_WINDOW_SECONDS,
    back_under,
    back_under_target,
    back_under_text,
    figures,
    median_replicas,
    refused_percent,
)
from inferscale.simulation.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    DEFAULT_TOLERANCE,
    Controller,
    HpaSpec,
    NoMetrics,
    PodView,
    ScalingPolicy,
    ScalingRules,
    Tolerances,
    replicas_for_metric,
    target_milli,
)
from inferscale.simulation.loop import Loop, Pod, PodModel, Sync, Timing, Trace
from inferscale.simulation.scenarios import Model, fewest_fixed, fixed_meets_target, scenario
from localcluster.binaries import binary

CHART_VALUES = yaml.safe_load((REPO / "chart" / "values.yaml").read_text())


def chart_hpa(autoscaling: dict) -> HpaSpec:
    """The duration-only HPA that the chart renders from `autoscaling` values."""
    return Autoscaling.model_validate(autoscaling).spec()


def pods(*values, pending: int = 0) -> list[PodView]:
    running = [PodView(f"p{i}", True, v) for i, v in enumerate(values)]
    return running + [PodView(f"pending{i}", False, None) for i in range(pending)]


# ---- calcPlainMetricReplicas -------------------------------------------------------


@pytest.mark.parametrize(
    "current, views, expected",
    [
        # 15 s against 12: ratio 1.25, ceil(1.25 x 3 pods).
        (3, pods(15, 15, 15), 4),
        # 13 s: ratio 1.083, inside the 10 % tolerance.
        (2, pods(13, 13), 2),
        # 10 s on 5 unqueued pods: ratio 0.833, ceil(4.17) = 5, no scale-in at all.
        (5, pods(10, 10, 10, 10, 10), 5),
        # Scale-in with a missing pod: it counts as the target, (6 + 6 + 12) / 3 = 8,
        # ceil(0.667 x 3) = 2, not the ceil(0.5 x 2) = 1 the two values alone say.
        (3, pods(6, 6, None), 2),
        # Scale-out with a missing pod: it counts as 0, (24 + 24 + 0) / 3 = 16, ceil(1.333 x 3) = 4.
        (3, pods(24, 24, None), 4),
        # Scale-out with a Pending pod: it counts as 0, (24 + 0) / 2 = 12: ratio 1, keep.
        (2, pods(24, pending=1), 2),
        # The missing pod at 0 would turn 13.5 (out) into 6.75 (in): keep.
        (2, pods(13.5, None), 2),
        # An idle pod reads 0 and is a value, not missing: (0 + 0 + 12) / 3 = 4, ceil(0.333 x 3) = 1.
        (3, pods(0, 0, 12), 1),
    ],
)
def test_replicas_for_one_pods_metric(current, views, expected):
    assert replicas_for_metric(current, views, target=12, tolerances=Tolerances())[0] == expected


@pytest.mark.parametrize(
    "views, tolerances, expected",
    [
        # 18 s against 12: ratio 1.5; a 0.5 band up keeps 3 pods, the default 0.1 adds 2.
        (pods(18, 18, 18), Tolerances(down=0.1, up=0.5), 3),
        (pods(18, 18, 18), Tolerances(down=0.1, up=0.1), 5),
        # 6 s: ratio 0.5; the up band says nothing about the way down: ceil(1.5) = 2...
        (pods(6, 6, 6), Tolerances(down=0.1, up=0.5), 2),
        # ...and a 0.5 band down keeps ratio 0.5 inside.
        (pods(6, 6, 6), Tolerances(down=0.5, up=0.1), 3),
    ],
)
def test_each_direction_has_its_own_tolerance(views, tolerances, expected):
    assert replicas_for_metric(3, views, target=12, tolerances=tolerances)[0] == expected


def test_the_tolerances_come_from_each_direction_of_behavior_or_the_controller_default():
    behavior = CHART_VALUES["autoscaling"]["behavior"]
    spec = chart_hpa(
        {**CHART_VALUES["autoscaling"], "behavior": {**behavior, "scaleUp": {**behavior["scaleUp"], "tolerance": 0.5}}}
    )
    assert spec.tolerances == Tolerances(down=0.1, up=0.5)


def test_the_average_is_an_integer_division_of_milli_values():
    # 1.0005 + 1.0005 -> 1000 m each (truncated); 2 pods, target 1: ratio 1.0 exactly.
    assert replicas_for_metric(2, pods(1.0005, 1.0009), target=1, tolerances=Tolerances(0, 0))[1] == 1.0


def test_a_target_rounds_up_to_milli_units_as_quantity_milli_value_does():
    # 0.0001 is 1m to the controller, not 0: 2m read on each of 2 pods is ratio 2, ceil(2 x 2) = 4.
    assert replicas_for_metric(2, pods(0.002, 0.002), target=0.0001, tolerances=Tolerances())[0] == 4
    # 0.0015 is 2m, not 1m: 3m is ratio 1.5, ceil(1.5 x 2) = 3, not the 6 of ratio 3.
    assert replicas_for_metric(2, pods(0.003, 0.003), target=0.0015, tolerances=Tolerances())[0] == 3
    # The values stay truncated, as the adapter serves them: 2.9m reads 2m, ratio 2 against 1m.
    assert replicas_for_metric(1, pods(0.0029), target=0.001, tolerances=Tolerances()) == (2, 0.002)


def test_no_value_for_any_pod_is_no_decision():
    with pytest.raises(NoMetrics):
        replicas_for_metric(3, pods(None, None, pending=1), target=12, tolerances=Tolerances())
    controller = Controller(chart_hpa(CHART_VALUES["autoscaling"]))
    decision = controller.sync(0.0, 3, pods(None, None, None))
    assert (decision.desired, decision.value, decision.scaling_active) == (3, None, False)


def offset_controller(offset: float) -> Controller:
    """The chart's duration HPA read through a query that takes `offset` seconds
    off each pod's average, with the HPA's own 10 % band and without a
    scale-down window: each sync acts."""
    spec = chart_hpa(CHART_VALUES["autoscaling"])
    return Controller(
        replace(
            spec,
            duration_offset=offset,
            scale_up=replace(spec.scale_up, tolerance=DEFAULT_TOLERANCE),
            scale_down=replace(spec.scale_down, stabilization_window_seconds=0),
        )
    )


def test_an_offset_holds_the_same_target_and_steepens_the_proposal_either_side_of_it():
    bare = pods(10, 10, 10, 10)
    # 4 pods at the bare 10 s: 10 / 12 proposes ceil(3.33) = 4; 6 / 8 proposes ceil(3.0) = 3.
    assert offset_controller(0.0).sync(0.0, 4, bare).desired == 4
    given_back = offset_controller(4.0).sync(0.0, 4, bare)
    assert (given_back.desired, given_back.value) == (3, 10.0)  # the HPA's reading is still the duration
    # 13.2 s is 10 % over 12 (inside the tolerance) but 15 % over 8: ceil(1.15 x 4) = 5.
    queued = pods(13.2, 13.2, 13.2, 13.2)
    assert [offset_controller(c).sync(0.0, 4, queued).desired for c in (0.0, 4.0)] == [4, 5]
    # At the target itself both keep their count.
    assert [offset_controller(c).sync(0.0, 4, pods(*[12.0] * 4)).desired for c in (0.0, 4.0)] == [4, 4]


@pytest.mark.parametrize("offset", [-1.0, 12.0, 13.0])
def test_an_offset_is_refused_unless_it_leaves_a_target_above_zero(offset):
    with pytest.raises(ValueError, match="duration_offset"):
        replace(chart_hpa(CHART_VALUES["autoscaling"]), duration_offset=offset)


# ---- two metrics: computeReplicasForMetrics -------------------------------------------


def held(*pairs) -> list[PodView]:
    """Pods as (duration, requests held) pairs."""
    return [PodView(f"p{i}", True, duration, requests) for i, (duration, requests) in enumerate(pairs)]


def two_metric_controller(**spec) -> Controller:
    base = chart_hpa(CHART_VALUES["autoscaling"])
    return Controller(HpaSpec(**{**base.__dict__, "held_target": 1.5, **spec}))


def test_the_larger_proposal_of_two_metrics_wins():
    # Duration 10 s of 12 on 5 pods proposes ceil(0.83 x 5) = 5; 3.0 held of 1.5
    # proposes 10: scale out on the second metric though the first is content.
    assert two_metric_controller().sync(0.0, 5, held(*[(10.0, 3.0)] * 5)).desired == 10
    # And the other way round: 0.3 held proposes 1, the duration's 5 keeps the count.
    assert two_metric_controller().sync(0.0, 5, held(*[(10.0, 0.3)] * 5)).desired == 5
    # The value the HPA reports for the run is still the duration's; the second
    # metric's average is reported beside it.
    decision = two_metric_controller().sync(0.0, 5, held(*[(10.0, 3.0)] * 4, (10.0, 1.0)))
    assert (decision.value, decision.held) == (10.0, 2.6)
    assert Controller(chart_hpa(CHART_VALUES["autoscaling"])).sync(0.0, 1, pods(10.0)).held is None


def test_a_metric_without_values_stops_a_scale_in_but_not_a_scale_out():
    # Held has no values: the duration alone proposes 20 s / 12 x 2 -> 4, a scale-out: it goes ahead.
    out = two_metric_controller().sync(0.0, 2, held((20.0, None), (20.0, None)))
    assert (out.desired, out.scaling_active) == (4, True)
    # Duration 0 (idle) would scale in, but with held missing nothing is decided.
    idle = two_metric_controller().sync(0.0, 4, held(*[(0.0, None)] * 4))
    assert (idle.desired, idle.scaling_active) == (4, False)


# ---- behaviour: stabilization and policies ------------------------------------------


def chart_controller(**autoscaling) -> Controller:
    return Controller(chart_hpa({**CHART_VALUES["autoscaling"], **autoscaling}))


def test_chart_scale_up_policies_allow_the_larger_of_double_and_four_pods_per_15_s():
    controller = chart_controller(minReplicas=1)  # from one pod: the first step is the policies' to take
    replicas, steps = 1, []
    for t in (0, 15, 30):
        # 120 s against 12 on every pod: the proposal is ten times the count.
        replicas = controller.sync(float(t), replicas, pods(*[120.0] * replicas)).desired
        steps.append(replicas)
    # 1 -> max(1 x 2, 1 + 4) = 5; at 15 s the first event is out of the period
    # (only events after now - 15 s count), so it starts at 5: max(10, 9) = 10;
    # at 30 s from 10: max(20, 14) = 20, also the chart's maxReplicas.
    assert steps == [5, 10, 20]


def test_scale_up_limit_counts_from_the_start_of_each_policys_period():
    spec = HpaSpec(
        1,
        100,
        12,
        ScalingRules(0, "Max", (ScalingPolicy("Pods", 4, 30), ScalingPolicy("Percent", 100, 30))),
        ScalingRules(300, "Min", (ScalingPolicy("Percent", 50, 60),)),
    )
    controller = Controller(spec)
    assert controller.sync(0.0, 1, pods(120)).desired == 5  # max(1 + 4, 2)
    assert controller.sync(15.0, 5, pods(*[120] * 5)).desired == 5  # period start still 1
    assert controller.sync(31.0, 5, pods(*[120] * 5)).desired == 10  # max(5 + 4, 10)


def test_select_policy_min_takes_the_smaller_change():
    spec = HpaSpec(
        1,
        100,
        12,
        ScalingRules(0, "Min", (ScalingPolicy("Pods", 4, 30), ScalingPolicy("Percent", 100, 30))),
        ScalingRules(0, "Max", (ScalingPolicy("Percent", 50, 60),)),
    )
    assert Controller(spec).sync(0.0, 1, pods(120)).desired == 2  # min(1 + 4, 2)
    assert Controller(spec).sync(0.0, 8, pods(*[120] * 8)).desired == 12  # min(8 + 4, 16)


def test_scale_down_waits_out_the_stabilization_window_then_halves_per_minute():
    controller = chart_controller(minReplicas=1, maxReplicas=10)
    busy, idle = [24.0] * 10, [0.0] * 10
    assert controller.sync(0.0, 10, pods(*busy)).desired == 10
    window = CHART_VALUES["autoscaling"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
    # Idle from 15 s: the recommendation of 1 is held back by the 10 recorded at 0 s.
    for t in range(15, window, 15):
        assert controller.sync(float(t), 10, pods(*idle)).desired == 10, t
    # A window after the last 10: int(10 x 0.5) = 5, then nothing for 60 s, then int(5 x 0.5) = 2, then 1.
    assert controller.sync(window + 1.0, 10, pods(*idle)).desired == 5
    assert controller.sync(window + 45.0, 5, pods(*idle[:5])).desired == 5
    assert controller.sync(window + 62.0, 5, pods(*idle[:5])).desired == 2
    assert controller.sync(window + 123.0, 2, pods(*idle[:2])).desired == 1


# ---- an HPA without behavior: normalizeDesiredReplicas ---------------------------------


def test_without_behavior_each_sync_may_double_or_add_up_to_four():
    controller = chart_controller(minReplicas=1, behavior=None)
    replicas, steps = 1, []
    for t in (0, 1, 2, 3):
        # 120 s against 12: the proposal is ten times the count. No period: a
        # sync a second after the last may scale again (calculateScaleUpLimit).
        replicas = controller.sync(float(t), replicas, pods(*[120.0] * replicas)).desired
        steps.append(replicas)
    # max(2 x 1, 4) = 4, then 8, 16, and the chart's maxReplicas 20.
    assert steps == [4, 8, 16, 20]


def test_without_behavior_scale_down_holds_the_highest_of_300_s_then_goes_all_the_way():
    controller = chart_controller(minReplicas=1, behavior=None)
    assert controller.sync(0.0, 10, pods(*[12.0] * 10)).desired == 10
    idle = [0.0] * 10
    for t in range(15, 301, 15):
        # The 10 recommended at 0 s is inside the window up to 300 s inclusive
        # (stabilizeRecommendation drops only samples before the cutoff).
        assert controller.sync(float(t), 10, pods(*idle)).desired == 10, t
    # Then the highest left is 0: no rate limit, straight to minReplicas.
    assert controller.sync(301.0, 10, pods(*idle)).desired == 1


def test_a_user_null_deletes_the_charts_default_and_other_keys_merge_as_helm_coalesces():
    chart = {"a": {"b": 1, "c": 2}, "d": 3, "g": {"h": 4}}
    user = {"a": {"b": None, "e": 5}, "d": None, "f": None, "g": 6}
    assert coalesced(chart, user) == {"a": {"c": 2, "e": 5}, "f": None, "g": 6}


def test_rules_a_user_leaves_out_are_the_charts_and_those_set_to_null_the_api_servers_defaults():
    chart = chart_hpa(CHART_VALUES["autoscaling"])

    def installed(behavior) -> HpaSpec:
        return Model.from_chart_values(coalesced(CHART_VALUES, {"autoscaling": {"behavior": behavior}})).hpa

    # Left out: the chart's window (420 s) and policies; a list given replaces the chart's.
    select_max = installed({"scaleDown": {"selectPolicy": "Max"}})
    assert select_max.scale_down == replace(chart.scale_down, select_policy="Max")
    two_per_minute = installed({"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}})
    assert two_per_minute.scale_up == replace(chart.scale_up, policies=(ScalingPolicy("Pods", 2, 60),))

    no_behavior = installed(None)
    assert not no_behavior.has_behavior and chart.has_behavior
    assert (no_behavior.scale_up, no_behavior.scale_down) == (DEFAULT_SCALE_UP, DEFAULT_SCALE_DOWN)
    assert installed({"scaleUp": None}).scale_up == DEFAULT_SCALE_UP
    assert installed({"scaleUp": None}).scale_down == chart.scale_down
    window_unset = installed({"scaleDown": {"stabilizationWindowSeconds": None}}).scale_down
    assert window_unset == replace(chart.scale_down, stabilization_window_seconds=300)


def test_outside_the_bounds_it_goes_to_the_bound_without_metrics():
    controller = chart_controller(maxReplicas=4)
    assert controller.sync(0.0, 7, []).desired == 4
    assert chart_controller(minReplicas=2).sync(0.0, 1, []).desired == 2


# ---- arrivals ----------------------------------------------------------------------


def test_paced_arrivals_send_exactly_the_rate_per_user_period():
    times = list(load.paced_arrivals(load.step(0.0, 2.0, 0.0), 100.0, random.Random(3), user_rps=0.2))
    assert len(times) == 200  # 10 users x 20 periods of 5 s
    assert times == sorted(times)


def test_poisson_arrivals_follow_a_changing_rate():
    shape = load.step(1.0, 4.0, 500.0)
    times = list(load.poisson_arrivals(shape, 1000.0, random.Random(5)))
    before, after = sum(t < 500 for t in times), sum(t >= 500 for t in times)
    # Means 500 and 2000; five standard deviations either side.
    assert 390 < before < 610 and 1780 < after < 2220, (before, after)


def test_back_under_target_means_staying_there():
    def trace(values):
        return Trace(syncs=[Sync(15.0 * i, 1, 1, 1, v) for i, v in enumerate(values)])

    # Above until 60 s, a dip at 90 s, above again, then under from 150 s on.
    values = [20, 20, 20, 20, 20, 10, 20, 20, 20, 20, 11, *[10] * 30]
    assert back_under_target(trace(values), 12, 0.0) == 150.0
    assert back_under_target(trace([20] * 40), 12, 0.0) is None
    # Under from the start, but the run ends before 300 s of it: cannot tell.
    assert back_under_target(trace([10] * 10), 12, 0.0) is None


def test_prometheus_durations_in_every_unit_the_charts_schema_allows():
    assert seconds("1m30s") == 90 and seconds("15s") == 15 and seconds("2h") == 7200
    assert seconds("250ms") == 0.25 and seconds("1w") == 7 * 86400 and seconds("1y") == 365 * 86400
    for wrong in ("1 m", "", "15", 15):
        with pytest.raises(ValueError):
            seconds(wrong)


# ---- the loop ------------------------------------------------------------------------


POD = PodModel(slots=2, max_queue=8, inference_seconds=10.0, model_load_seconds=5.0)
FAST = Timing(scrape_interval=15.0, rate_window=60.0, sync_period=15.0)


def fixed(replicas: int, rate: float, seconds_: float = 3600.0, kind: str = "poisson"):
    loop = Loop(None, POD, FAST, kind, seed=2, fixed_replicas=replicas)
    return loop.run(load.step(rate, rate, 0.0), seconds_)


def test_below_capacity_requests_take_the_inference_time_and_none_is_refused():
    trace = fixed(10, 0.2)  # 2 pods' worth on 10 pods
    assert not trace.refused
    assert all(d >= POD.inference_seconds - 1e-9 for _, d in trace.answered)
    assert sum(d for _, d in trace.answered) / len(trace.answered) < 1.2 * POD.inference_seconds


def test_over_capacity_the_queue_bounds_the_wait_and_the_rest_is_refused():
    trace = fixed(1, 1.0)  # 5 pods' worth on 1
    arrived = len(trace.answered) + len(trace.refused)
    assert len(trace.refused) > 0.7 * arrived
    # A request waits behind at most max_queue / slots rounds of inferences.
    longest = (POD.max_queue // POD.slots + 1) * POD.inference_seconds
    assert max(d for _, d in trace.answered) <= longest + 1e-9


def test_a_replay_serves_exactly_the_given_arrivals():
    # One pod, 2 slots, a queue of 1: 0 s and 1 s run, 2 s waits for the first
    # slot (free at 10 s), 3 s finds the queue full. -1 s and 40 s lie outside the run.
    pod = PodModel(slots=2, max_queue=1, inference_seconds=10.0)
    trace = Loop(None, pod, FAST, fixed_replicas=1).replay([-1.0, 0.0, 1.0, 2.0, 3.0, 40.0], 30.0)
    assert trace.arrived == 4
    assert trace.answered == [(0.0, 10.0), (1.0, 10.0), (2.0, 18.0)]
    assert trace.refused == [3.0]


def test_a_pod_scraped_once_has_its_held_requests_but_no_duration_yet():
    # adapter-values.yaml: avg_over_time of a gauge answers from one sample,
    # rate() of the duration histogram needs two.
    loop = Loop(None, POD, FAST, fixed_replicas=1)
    pod = Pod("new", created=0.0, running_at=0.0, ready_at=5.0)
    pod.samples.append((1.0, 0.0, 0, 3))  # (time, duration sum, count, held)
    assert loop.held(pod, 2.0) == 3 and loop.value(pod, 2.0) is None
    pod.samples.append((16.0, 10.0, 1, 1))
    assert loop.held(pod, 17.0) == 2 and loop.value(pod, 17.0) == 10.0
    assert loop.held(pod, 0.5) is None, "no scrape in the window yet"


def test_every_accepted_request_is_answered_also_by_pods_scaled_in():
    model = Model.from_chart_values(CHART_VALUES)
    loop = Loop(model.hpa, model.pod, model.timing, "poisson", seed=4)
    shape = load.stop(5 * model.pod_capacity, 1200.0)
    trace = loop.run(shape, 3600.0)
    assert max(r for _, r in trace.replicas) >= 5 and trace.replicas[-1][1] == model.hpa.min_replicas
    assert trace.arrived > 1000
    assert len(trace.answered) + len(trace.refused) == trace.arrived


def test_a_full_node_keeps_the_rest_of_a_scale_up_pending_until_room_is_made():
    model = Model.from_chart_values(CHART_VALUES)
    shape = load.stop(5 * model.pod_capacity, 1200.0)

    def run(schedulable):
        return Loop(model.hpa, model.pod, model.timing, "poisson", 4, max_running_pods=schedulable).run(shape, 3600.0)

    bounded, unbounded = run(3), run(None)
    # The HPA asks past the node's room, and Pending pods have no value to lower its count.
    assert max(r for _, r in bounded.replicas) > 3
    assert max(s.ready for s in bounded.syncs) == 3 < max(s.ready for s in unbounded.syncs)
    # Three pods queue more than the unbounded run's: the load is five pods' worth.
    assert statistics.fmean(d for _, d in bounded.answered) > statistics.fmean(d for _, d in unbounded.answered)
    assert len(bounded.answered) + len(bounded.refused) == bounded.arrived
    assert bounded.replicas[-1][1] == model.hpa.min_replicas


def test_same_seed_same_run():
    model = Model.from_chart_values(CHART_VALUES)
    case = scenario("step", model.pod_capacity, 5, 0.5)

    def replicas(seed):
        return Loop(model.hpa, model.pod, model.timing, "paced", seed).run(case.shape, case.seconds).replicas

    assert replicas(7) == replicas(7)
    assert replicas(7) != replicas(8)


def test_the_charts_slot_utilization_target_becomes_requests_held_per_pod():
    assert Model.from_chart_values(CHART_VALUES).hpa.held_target == 0.75 * 2
    values = yaml.safe_load(yaml.safe_dump(CHART_VALUES))
    values["server"]["modelConcurrency"] = 4
    values["autoscaling"]["slotUtilization"]["target"] = 0.5
    assert Model.from_chart_values(values).hpa.held_target == 2.0
    # The HPA reads 0.1 (100m) against shares: 3 slots make 300m of requests, not 301m.
    values["server"]["modelConcurrency"] = 3
    values["autoscaling"]["slotUtilization"]["target"] = 0.1
    assert target_milli(Model.from_chart_values(values).hpa.held_target) == 300
    values["autoscaling"]["slotUtilization"]["enabled"] = False
    assert Model.from_chart_values(values).hpa.held_target is None


def test_the_charts_duration_offset_is_what_the_simulated_hpa_takes_off():
    hpa = Model.from_chart_values(CHART_VALUES).hpa
    assert (hpa.target, hpa.duration_offset, hpa.tolerances.up) == (12, 4, 0.4)
    values = yaml.safe_load(yaml.safe_dump(CHART_VALUES))
    values["autoscaling"]["durationOffsetSeconds"] = 5.5
    assert Model.from_chart_values(values).hpa.duration_offset == 5.5
    # Older copies of values.yaml have no offset: the duration itself.
    del values["autoscaling"]["durationOffsetSeconds"]
    assert Model.from_chart_values(values).hpa.duration_offset == 0


def test_a_step_scales_out_within_a_minute_and_never_past_max_replicas():
    model = Model.from_chart_values(CHART_VALUES)
    case = scenario("step", model.pod_capacity, 5, 0.5)
    trace = Loop(model.hpa, model.pod, model.timing, "poisson", 1).run(case.shape, case.seconds)
    first_out = next(at for at, r in trace.replicas[1:] if r > model.hpa.min_replicas)
    # The load needs a window of samples and a sync: scrape + window + sync at the most.
    timing = model.timing
    assert (
        case.change_at
        < first_out
        <= (case.change_at + timing.scrape_interval + timing.rate_window + timing.sync_period + POD.inference_seconds)
    )
    assert max(r for _, r in trace.replicas) <= model.hpa.max_replicas


def test_fewest_fixed_is_the_smallest_count_that_meets_the_target():
    model = Model.from_chart_values(CHART_VALUES)
    case = scenario("step", model.pod_capacity, 2, 0.5)
    fewest = fewest_fixed(model, case, "paced", limit=20)
    assert fewest is not None and fewest >= 2  # two pods' worth of load
    assert fixed_meets_target(model, case, "paced", 1, fewest)
    assert not fixed_meets_target(model, case, "paced", 1, fewest - 1)


# ---- the command ---------------------------------------------------------------------


def test_the_command_prints_figures_for_the_chart_values():
    report = simulate_json("--scenario", "stop")
    assert report["target_seconds"] == CHART_VALUES["autoscaling"]["targetAverageDurationSeconds"]
    assert report["autoscaled"]["peak_replicas"] >= 5
    assert report["autoscaled"]["back_to_min_seconds"] is not None
    assert report["fewest_fixed_replicas"] >= 5


def simulate_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`inferscale simulate` with these arguments, run as a user runs it, from the repository's root."""
    return subprocess.run(
        [sys.executable, "-m", "inferscale.cli", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def simulate_json(*args: str) -> dict:
    result = simulate_cli("--values", str(REPO / "chart" / "values.yaml"), "--hours", "1", "--json", *args, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_reader_that_stops_early_gets_no_traceback():
    # As `inferscale simulate | head -1`, with the reader gone before the report is printed.
    command = subprocess.Popen(
        [sys.executable, "-m", "inferscale.cli", "simulate", "--hours", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    command.stdout.close()
    _, stderr = command.communicate(timeout=120)
    assert command.returncode == 0 and stderr == b""


def test_a_users_values_file_lays_over_the_charts_as_helm_lays_it(tmp_path):
    # As `helm install -f chart/values.yaml -f mine.yaml`: only what mine.yaml sets changes.
    mine = tmp_path / "mine.yaml"
    mine.write_text("autoscaling:\n  maxReplicas: 3\n")
    capped = simulate_json("--rate", "1", "--values", str(mine))
    assert capped["autoscaled"]["peak_replicas"] == 3
    assert capped["target_seconds"] == 12.0 and capped["pod_capacity_rps"] == 0.2
    # The chart's own 20 let the same load scale past 3.
    charts = simulate_json("--rate", "1")["autoscaled"]
    assert charts["peak_replicas"] > 3
    # A null drops a block of the chart's, as helm drops it: no behavior at
    # all, so the HPA's defaults (a 300 s scale-down window, not the chart's
    # 420 s). The run is the seed's, arrivals and all: only the behavior can
    # make it differ.
    mine.write_text("autoscaling:\n  behavior: null\n")
    defaults = simulate_json("--rate", "1", "--values", str(mine))["autoscaled"]
    assert defaults["peak_replicas"] > 3
    assert defaults != charts


@pytest.mark.parametrize(
    "mine, refused",
    [
        ("autoscaling:\n  maxReplicas: 3\n", None),
        ("autoscaling:\n  behavior: null\n", None),
        # helm's YAML reads an exponent without a dot as a number; YAML 1.1's a string.
        ("autoscaling:\n  slotUtilization:\n    target: 8e-1\n", None),
        ("server:\n  inferenceDurationSeconds: 1e1\n", None),
        ("server:\n  inferenceDurationSeconds: 1e1x\n", "server.inferenceDurationSeconds: '1e1x' is not of type"),
        # Past float64's range go-yaml keeps the string too.
        ("server:\n  inferenceDurationSeconds: 1e400\n", "server.inferenceDurationSeconds: '1e400' is not of type"),
        # A null deletes the chart's block, as in helm: the templates would dereference nothing.
        ("server: null\n", "the values: 'server' is a required property"),
        ("serviceMonitor:\n  interval: null\n", "serviceMonitor: 'interval' is a required property"),
        # The loop reads the duration metric alone without it, but the chart requires it.
        ("autoscaling:\n  slotUtilization: null\n", "autoscaling: 'slotUtilization' is a required property"),
        ("server:\n  modelConcurrency: two\n", "server.modelConcurrency: 'two' is not of type 'integer'"),
        ("server:\n  modelConcurency: 4\n", "server: Additional properties are not allowed ('modelConcurency'"),
        ("autoscaling:\n  maxReplicas: 0\n", "autoscaling.maxReplicas: 0 is less than the minimum of 1"),
    ],
)
def test_the_command_refuses_exactly_the_values_helm_refuses_by_the_charts_schema(tmp_path, mine, refused):
    mine_path = tmp_path / "mine.yaml"
    mine_path.write_text(mine)
    helm = subprocess.run(
        [binary("helm"), "template", "inferscale", str(REPO / "chart"), "-f", str(mine_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    simulated = simulate_cli(
        "-f", str(REPO / "chart" / "values.yaml"), "-f", str(mine_path), "--hours", "0.1", "--json"
    )
    if refused is None:
        assert helm.returncode == 0, helm.stderr
        assert simulated.returncode == 0, simulated.stderr
        return
    assert "values don't meet the specifications of the schema" in helm.stderr
    assert simulated.returncode == 2 and simulated.stdout == ""
    named = f"{mine_path} over {REPO / 'chart' / 'values.yaml'}"
    assert f"{named}: the chart's values.schema.json refuses" in simulated.stderr
    assert refused in simulated.stderr and "Traceback" not in simulated.stderr


def helm_template(*values_files) -> subprocess.CompletedProcess:
    args = [arg for path in values_files for arg in ("-f", str(path))]
    command = [binary("helm"), "template", "inferscale", str(REPO / "chart"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


# servicemonitor.yaml fails the render while it renders a ServiceMonitor; without
# one the scrapes are the user's Prometheus's, and helm installs any window.
@pytest.mark.parametrize("enabled", [True, False])
def test_a_window_under_four_scrape_intervals_is_refused_where_the_chart_refuses_it(tmp_path, enabled):
    mine = tmp_path / "mine.yaml"
    # Without a ServiceMonitor the offset has no recorded series (the refusal below): the bare duration.
    offset = "" if enabled else "  durationOffsetSeconds: 0\n"
    mine.write_text(f"serviceMonitor:\n  enabled: {str(enabled).lower()}\nautoscaling:\n  rateWindow: 30s\n{offset}")
    helm = helm_template(mine)
    simulated = simulate_cli("-f", str(REPO / "chart" / "values.yaml"), "-f", str(mine), "--hours", "0.1", "--json")
    if not enabled:
        assert helm.returncode == 0, helm.stderr
        assert simulated.returncode == 0, simulated.stderr
        return
    assert "autoscaling.rateWindow (30s) must be at least 4 x serviceMonitor.interval (10s)" in helm.stderr
    assert simulated.returncode == 2 and simulated.stdout == ""
    assert (
        "autoscaling: rateWindow (30s) must be at least 4 x serviceMonitor.interval (10s), as the chart refuses it"
        in simulated.stderr
    )


# A values file whose one scale-up policy has this value and period, as written in YAML.
POLICY = "autoscaling:\n  behavior:\n    scaleUp:\n      policies: [{{type: Pods, value: {}, periodSeconds: {}}}]"


# The schema leaves `behavior` unchecked and helm renders it as it is: a quoted
# number stays a string, which autoscaling/v2's int32 fields refuse at install.
@pytest.mark.parametrize(
    "mine, refused",
    [
        (POLICY.format('"4"', 15), 'autoscaling.behavior.scaleUp.policies.0.value: "4" is not a number'),
        (POLICY.format(4, '"15"'), 'autoscaling.behavior.scaleUp.policies.0.periodSeconds: "15" is not a number'),
        (POLICY.format("true", 15), "autoscaling.behavior.scaleUp.policies.0.value: true is not a number"),
        (
            "autoscaling:\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: '300'\n",
            'autoscaling.behavior.scaleDown.stabilizationWindowSeconds: "300" is not a number: autoscaling/v2 '
            "takes an integer here, and the API server refuses the HPA",
        ),
        # A number passes the schema, infinite or not; the API server's Quantity takes no +Inf.
        ("autoscaling:\n  targetAverageDurationSeconds: .inf\n", "autoscaling.targetAverageDurationSeconds: Input"),
        # What helm passes as numbers, 4.0 rendered as 4.
        (POLICY.format(4, 15), None),
        (POLICY.format("4.0", "15.0"), None),
    ],
)
def test_values_the_api_server_would_refuse_are_refused_by_their_path(tmp_path, mine, refused):
    mine_path = tmp_path / "mine.yaml"
    mine_path.write_text(mine)
    result = simulate_cli("-f", str(REPO / "chart" / "values.yaml"), "-f", str(mine_path), "--hours", "0.1", "--json")
    if refused is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2 and result.stdout == ""
    assert f"{mine_path} over {REPO / 'chart' / 'values.yaml'}: {refused}" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_refusal_docs_sizing_quotes_is_what_its_command_prints(tmp_path):
    # Step 1 of "Sizing your own HPA", run as step 2 runs it: the schema checks first.
    quoted = 'autoscaling.behavior.scaleDown.stabilizationWindowSeconds: "300" is not a number'
    mine = tmp_path / "my-values.yaml"
    mine.write_text("autoscaling:\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: '300'\n")
    result = simulate_cli("-f", "chart/values.yaml", "-f", str(mine))
    assert result.returncode == 2 and quoted in result.stderr
    assert f"`{quoted}`" in (REPO / "docs" / "sizing.md").read_text()


def test_the_charts_max_replicas_comment_quotes_the_5x_step_of_docs_sizing():
    # The first table of docs/sizing.md is the chart's defaults: back under the target, s, and the peak.
    sizing = (REPO / "docs" / "sizing.md").read_text()
    rows = re.findall(r"^\| step 5x \| (?:paced|poisson) \| (\d+) \| - \| (\d+) \|", sizing, re.M)[:2]
    (fast, slow), (low, high) = (sorted(int(row[i]) for row in rows) for i in (0, 1))
    values = (REPO / "chart" / "values.yaml").read_text()
    comments = " ".join(line.strip().lstrip("#- ") for line in values.splitlines())
    peak, back = (f"{a}" if a == b else f"{a}-{b}" for a, b in ((low, high), (fast, slow)))
    assert f"peaks at {peak} pods and is back under the target in {back} s with 20" in comments


# null deletes the key, as helm does, and the chart's template then renders no ServiceMonitor either.
@pytest.mark.parametrize("enabled", ["false", "null"])
def test_values_without_a_servicemonitor_are_simulated_with_a_note_that_the_scrapes_are_the_users(tmp_path, enabled):
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        f"serviceMonitor:\n  enabled: {enabled}\n  interval: 15s\nautoscaling:\n  durationOffsetSeconds: 0\n"
    )
    result = simulate_cli("-f", str(REPO / "chart" / "values.yaml"), "-f", str(mine), "--hours", "0.1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["autoscaled"]["peak_replicas"] >= 1
    assert "serviceMonitor.enabled is false" in result.stderr
    assert "scrapes the pods every 15s by a configuration of its own" in result.stderr
    assert "Traceback" not in result.stderr
    # The chart's own values render one: no note (nor anything else) on stderr.
    assert simulate_cli("--hours", "0.1", "--json").stderr == ""


def test_an_offset_that_no_longer_fits_the_timings_is_named_with_the_one_that_does(tmp_path):
    # The chart's NOTES say the same (tests/test_chart.py); its own 4 s on 10 s and 12 s says nothing.
    mine = tmp_path / "mine.yaml"
    timings = "server:\n  inferenceDurationSeconds: 5\nautoscaling:\n  targetAverageDurationSeconds: 6\n"
    mine.write_text(timings)
    result = simulate_cli("-f", str(REPO / "chart" / "values.yaml"), "-f", str(mine), "--hours", "0.1", "--json")
    assert result.returncode == 0, result.stderr
    assert "through the 4 s offset a pod answering unqueued (5 s) reads 0.50 of the target" in result.stderr
    assert "for these timings durationOffsetSeconds = 2 s does the same" in result.stderr
    mine.write_text(timings + "  durationOffsetSeconds: 2\n")
    assert simulate_cli("-f", str(REPO / "chart" / "values.yaml"), "-f", str(mine), "--hours", "0.1").stderr == ""


@pytest.mark.parametrize(
    "mine", ["serviceMonitor:\n  enabled: false\n", "prometheusRule:\n  enabled: false\ndashboard:\n  enabled: false\n"]
)
def test_the_default_offset_without_its_recorded_series_is_refused_where_the_chart_refuses_it(tmp_path, mine):
    mine_path = tmp_path / "mine.yaml"
    mine_path.write_text(mine)
    helm = helm_template(mine_path)
    assert (
        "autoscaling.durationOffsetSeconds (4) needs prometheusRule.enabled and serviceMonitor.enabled" in helm.stderr
    )
    simulated = simulate_cli("-f", str(REPO / "chart" / "values.yaml"), "-f", str(mine_path), "--hours", "0.1")
    assert simulated.returncode == 2 and simulated.stdout == "" and "Traceback" not in simulated.stderr
    assert "durationOffsetSeconds (4) needs prometheusRule.enabled and serviceMonitor.enabled" in simulated.stderr


@pytest.mark.parametrize("module", ["yaml", "jsonschema"])
def test_the_command_names_a_missing_extra_instead_of_a_traceback(module):
    # A None in sys.modules makes `import module` fail as if it were not installed.
    run_cli = f"import sys; sys.modules[{module!r}] = None; from inferscale.cli import main; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", run_cli, "simulate"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 2
    assert f"inferscale simulate: {module} is missing: pip install 'inferscale[simulate]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_schema_beside_the_values_that_is_not_one_is_named(tmp_path):
    (tmp_path / "values.yaml").write_text((REPO / "chart" / "values.yaml").read_text())
    (tmp_path / "values.schema.json").write_text('{"type": "object", "properties": {"server": {"type": 5}}}')
    result = simulate_cli("-f", str(tmp_path / "values.yaml"))
    assert result.returncode == 2
    assert f"cannot read the chart's schema {tmp_path / 'values.schema.json'}: 5 is not valid" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_command_takes_the_load_in_requests_per_second_and_the_clusters_room():
    # 1 req/s is 5 pods' worth of the chart's pod (2 slots x 10 s): the same run as --times 5.
    by_rate, by_times = simulate_json("--rate", "1"), simulate_json("--times", "5")
    assert by_rate["load"] == by_times["load"] == "step 0 -> 1 req/s at 60 s"
    assert by_rate["autoscaled"] == by_times["autoscaled"]
    # Room for 3 pods: the HPA still asks for more, and 3 pods queue and refuse what 5 would serve.
    crowded = simulate_json("--rate", "1", "--max-running-pods", "3")
    assert crowded["autoscaled"]["peak_replicas"] > 3
    assert crowded["autoscaled"]["mean_seconds"] > by_rate["autoscaled"]["mean_seconds"]
    assert crowded["autoscaled"]["refused_percent"] > by_rate["autoscaled"]["refused_percent"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rate", "0"], "--rate: must be a finite number above 0, not '0'"),
        (["--rate", "nan"], "--rate: must be a finite number above 0, not 'nan'"),
        (["--times", "-3"], "--times: must be a finite number above 0, not '-3'"),
        (["--times", "inf"], "--times: must be a finite number above 0, not 'inf'"),
        (["--hours", "0"], "--hours: must be a finite number above 0, not '0'"),
        (["--hours", "nan"], "--hours: must be a finite number above 0, not 'nan'"),
        # Not "invalid _above_zero value": the name of the function that read it.
        (["--hours", "two"], "--hours: must be a number, not 'two'"),
        (["--sync-period", "15s"], "--sync-period: must be a number, not '15s'"),
        (["--hours", "100000"], "--hours 100000 is over the 48 it simulates"),
        (["--hours", "0.001"], "--hours 0.001 ends the step before its load changes and settles (60 s in)"),
        (["--scenario", "ramp", "--hours", "0.5"], "ends the ramp before its load changes and settles (1860 s in)"),
        (["--sync-period", "0"], "--sync-period: must be a finite number of at least 1 s, not '0'"),
        # Each sync would move the clock by nothing: the run never ends.
        (["--sync-period", "1e-300"], "--sync-period: must be a finite number of at least 1 s, not '1e-300'"),
        # Every arrival is queued before the run: billions of them would fill memory.
        (["--rate", "1e6"], "--rate 1e+06 over --hours 2 is up to 7.2e+09 requests, over the 1e+07 it simulates"),
        (
            ["--times", "1e6", "--hours", "0.5"],
            "--times 1e+06 (200000 req/s) over --hours 0.5 is up to 3.6e+08 requests, over the 1e+07 it simulates",
        ),
        (["--max-running-pods", "1"], "--max-running-pods 1 is below minReplicas 2"),
        (["--rate", "1", "--times", "2"], "not allowed with argument"),
    ],
)
def test_the_command_refuses_a_load_or_room_it_cannot_simulate(args, message):
    result = simulate_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def chart_values_with(**changes) -> str:
    """The chart's values.yaml with `section__value=...` changes, as a file's text."""
    values = yaml.safe_load(yaml.safe_dump(CHART_VALUES))
    for path, value in changes.items():
        *sections, name = path.split("__")
        held = values
        for section in sections:
            held = held[section]
        held[name] = value
    return yaml.safe_dump(values)


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "server: {}\n",
            "{path}: server.modelConcurrency: missing; server.maxQueue: missing; ",
        ),
        (
            "autoscaling:\n  maxReplicas: 3\n",
            "autoscaling.minReplicas: missing; autoscaling.targetAverageDurationSeconds: missing; ",
        ),
        (
            "server: {}\n",
            "autoscaling: missing: the first file must be the chart's values.yaml (-f chart/values.yaml -f yours.yaml)",
        ),
        ("server: 5\n", "{path}: server: Input should be a valid dictionary or instance of Server (found 5); "),
        (
            chart_values_with(server__modelConcurrency="two"),
            "{path}: server.modelConcurrency: Input should be a valid integer",
        ),
        (
            chart_values_with(server__inferenceDurationSeconds=0),
            "server.inferenceDurationSeconds: Input should be greater than 0 (found 0)",
        ),
        (
            chart_values_with(serviceMonitor__interval=10),
            "{path}: serviceMonitor.interval: not a duration: 10 (write it as 15s, 1m30s)",
        ),
        (chart_values_with(autoscaling__rateWindow="1 m"), "{path}: autoscaling.rateWindow: not a duration: '1 m'"),
        (chart_values_with(autoscaling__minReplicas=30), "{path}: autoscaling: minReplicas 30 is above maxReplicas 20"),
        (
            chart_values_with(autoscaling__durationOffsetSeconds=12),
            "{path}: autoscaling: durationOffsetSeconds 12 is not below targetAverageDurationSeconds 12",
        ),
        # Values helm installs, but with no HPA of the chart's to simulate.
        (
            chart_values_with(autoscaling__enabled=False),
            "{path}: autoscaling.enabled: false: the chart renders no HPA of its own, and that HPA is what the "
            "simulator sizes (for a fixed count of pods, simulate minReplicas = maxReplicas = that count)",
        ),
        (
            chart_values_with(autoscaling__enabled=False, keda__enabled=True),
            "; keda.enabled: true: KEDA's own HPA then scales on an External metric from its Prometheus query",
        ),
        (
            chart_values_with(autoscaling__metric__type="External"),
            "{path}: autoscaling.metric.type: External: the HPA then scales on one value for the whole Service, "
            "its ratio to the target times the ready pods, with no rule for missing or unready pods",
        ),
        # A scrape every 0 s comes round again at the same instant, for ever.
        (
            chart_values_with(serviceMonitor__enabled=False, serviceMonitor__interval="0s"),
            "{path}: serviceMonitor.interval: '0s' is no time at all: it must be above 0",
        ),
        (chart_values_with(autoscaling__rateWindow="0ms"), "autoscaling.rateWindow: '0ms' is no time at all"),
        (
            chart_values_with(autoscaling__targetAverageDurationSeconds=float("inf")),
            "{path}: autoscaling.targetAverageDurationSeconds: Input should be a finite number (found inf)",
        ),
        (
            chart_values_with(server__inferenceDurationSeconds=float("nan")),
            "{path}: server.inferenceDurationSeconds: Input should be a finite number (found nan)",
        ),
        (
            chart_values_with(autoscaling__behavior__scaleUp__selectPolicy="Largest"),
            "autoscaling.behavior.scaleUp.selectPolicy: Input should be 'Max', 'Min' or 'Disabled' (found 'Largest')",
        ),
        ("", "cannot read chart values from {path}: it holds nothing, not a mapping of values"),
        ("- server\n", "cannot read chart values from {path}: it holds a list, not a mapping of values"),
        ("server: [\n", "cannot read chart values from {path}: while parsing"),
        (None, "cannot read chart values from {path}: [Errno 2] No such file or directory"),
    ],
)
def test_the_command_names_what_is_wrong_with_a_values_file(tmp_path, content, message):
    path = tmp_path / "values.yaml"
    if content is not None:
        path.write_text(content)
    result = simulate_cli("--values", str(path))
    assert result.returncode == 2
    assert message.format(path=path) in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


# ---- calibration against a measured run --------------------------------------------


def trace_of(*changes) -> Trace:
    return Trace(replicas=list(changes))


def test_agreement_counts_samples_within_one_replica_from_the_step_on():
    trace = trace_of((0.0, 1), (20.0, 4), (60.0, 2))
    observed = [
        Observed(-5.0, 1, None),  # before the step: not compared
        Observed(10.0, 1, 1.0),  # 1 vs 1
        Observed(30.0, 5, 2.0),  # 4 vs 5: within
        Observed(40.0, 6, 2.0),  # 4 vs 6: not
        Observed(70.0, 2, 1.0),  # 2 vs 2
    ]
    result = agreement(observed, trace, min_replicas=1)
    assert (result.samples, result.within) == (4, 3)
    assert result.within_share == 0.75
    # Measured first above minReplicas at 30 s, simulated at 20 s.
    assert result.first_scale_up_error == -10.0
    assert not result.calibrated  # 75 % < 90 %


def test_a_measured_run_is_judged_against_another_as_against_a_seed():
    # Two runs of one step: the first scales at 14 s and tops out at 12, the other at 30 s and 16.
    low = [Observed(-2.0, 1, None), Observed(0.0, 1, 0.0), Observed(14.0, 2, 0.0), Observed(60.0, 12, 11.0)]
    low += [Observed(at, 12, 9.0) for at in (120.0, 180.0, 240.0)]
    high = [Observed(-2.0, 1, None), Observed(0.0, 1, 0.0), Observed(30.0, 5, 13.7), Observed(45.0, 16, 12.0)]
    high += [Observed(at, 16, 9.0) for at in (120.0, 180.0, 240.0)]
    itself = agreement(low, as_trace(low), min_replicas=1)
    assert (itself.within_share, itself.first_scale_up_error) == (1.0, 0.0)
    # low's readings from the step: 1 vs 1, 2 vs 1, then 12 against 16 four times.
    against = agreement(low, as_trace(high), min_replicas=1)
    assert (against.samples, against.within) == (6, 2)
    assert (against.first_scale_up_measured, against.first_scale_up_simulated) == (14.0, 30.0)
    assert not against.calibrated


def test_within_seeds_counts_readings_inside_the_seeds_range_widened_by_one():
    low, high = trace_of((0.0, 1), (20.0, 4)), trace_of((0.0, 1), (20.0, 8))
    observed = [
        Observed(-5.0, 9, None),  # before the step: not compared
        Observed(10.0, 2, None),  # range 1..1, widened 0..2: inside
        Observed(30.0, 3, None),  # range 4..8, widened 3..9: inside
        Observed(40.0, 9, None),  # inside
        Observed(50.0, 10, None),  # above
    ]
    assert within_seeds(seed_ranges(observed, [low, high])) == 0.75
    # No single seed is within one replica of both 3 and 9.
    assert agreement(observed, low, 1).within_share < 0.75 and agreement(observed, high, 1).within_share < 0.75


def test_mid_rank_places_a_measured_figure_among_the_seeds_counting_ties_half():
    assert mid_rank(5, [3, 4, 5, 5, 6, 7]) == 0.5  # 2 below, 2 equal
    assert mid_rank(6, [3, 4, 5, 5, 6, 7]) == 4.5 / 6
    assert (mid_rank(2, [3, 4]), mid_rank(9, [3, 4]), mid_rank(4, [4, 4, 4])) == (0.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="at least one simulated figure"):
        mid_rank(4, [])


def test_ready_lags_run_from_asking_for_each_count_to_that_many_ready():
    asked = [(0.0, 2), (15.0, 4), (30.0, 6), (200.0, 3)]
    ready = [(0.0, 2), (25.0, 3), (40.0, 4), (41.0, 6), (200.0, 3)]
    # 3 and 4 asked at 15 s, Ready at 25 and 40 s; 5 and 6 asked at 30 s, both Ready at 41 s.
    assert ready_lags(asked, ready, above=2) == [10.0, 25.0, 11.0, 11.0]
    assert ready_lags(asked, [(0.0, 2), (25.0, 3)], above=2) == [10.0]  # the fourth never Ready: no more
    assert ready_lags([(0.0, 2)], [(0.0, 2)], above=2) == []
    measured = [Observed(-1.0, 2, None, ready=1), Observed(0.0, 2, None, ready=2), Observed(15.0, 3, None, ready=2)]
    measured.append(Observed(20.0, 3, None, ready=3))
    assert observed_ready_lags(measured, min_replicas=2) == [5.0]
    assert observed_ready_lags([Observed(0.0, 2, None), Observed(15.0, 3, None)], min_replicas=2) is None


def test_each_added_pod_turns_ready_after_its_start_its_model_load_and_the_next_startup_probe():
    model = Model.from_chart_values(CHART_VALUES)
    pod = model.pod
    probes = CHART_VALUES["probes"]
    assert pod.startup_probe_period == probes["startup"]["periodSeconds"] < probes["readiness"]["periodSeconds"]
    trace = Loop(model.hpa, pod, model.timing, "poisson", 3).run(load.stop(5 * model.pod_capacity, 600.0), 1200.0)
    assert trace.ready[0] == (0.0, model.hpa.min_replicas)
    lags = simulated_ready_lags(trace, model.hpa.min_replicas)
    assert len(lags) == max(r for _, r in trace.replicas) - model.hpa.min_replicas > 0
    earliest = pod.start_seconds + pod.model_load_seconds
    assert all(earliest <= lag <= earliest + pod.startup_probe_period for lag in lags), lags
    # Scaled in after the stop: the Ready count follows the replicas down.
    assert trace.ready[-1][1] == trace.replicas[-1][1] == model.hpa.min_replicas


def test_back_to_min_is_the_reading_from_which_the_hpa_stays_at_min():
    readings = [
        Observed(at, replicas, None)
        for at, replicas in [(90.0, 4), (100.0, 4), (130.0, 1), (140.0, 2), (160.0, 1), (170.0, 1)]
    ]
    assert back_to_min_observed(readings, 1, 100.0) == 60.0
    assert back_to_min_observed(readings[:-2], 1, 100.0) is None  # ends above min
    assert back_to_min_observed([Observed(120.0, 1, None)], 1, 100.0) == 0.0


def test_steady_replicas_are_the_median_over_the_same_span_measured_and_simulated():
    # Simulated: read at 100, 115, ..., 190 s (7 syncs, both ends included): 4 three times, 6 four times.
    trace = trace_of((0.0, 2), (50.0, 4), (140.0, 6))
    assert median_replicas(trace, 100.0, 190.0) == 6
    assert median_replicas(trace, 115.0, 160.0) == 5  # 4, 4, 6, 6: without the end, 4
    readings = [Observed(at, replicas, None) for at, replicas in [(90.0, 9), (100.0, 4), (150.0, 5), (190.0, 6)]]
    assert median_observed_replicas(readings, 100.0, 190.0) == 5  # 90 s is before the span
    assert median_observed_replicas(readings, 200.0, 300.0) is None


def test_measured_readings_are_back_under_target_as_simulated_syncs_are():
    # Over at 20 s, a dip at 40 s that does not hold, then under from 60 s on;
    # a reading without a value (the HPA had none) neither breaks nor starts it.
    readings = [(0.0, 15.0), (20.0, 13.0), (40.0, 11.0), (50.0, 12.5), (60.0, 11.0), (80.0, None)]
    readings += [(60.0 + t, 10.0) for t in range(30, int(HOLD_SECONDS) + 60, 30)]
    assert back_under(readings, 12.0, 10.0) == 50.0
    assert back_under(readings[:8], 12.0, 10.0) is None  # too little run left to tell


def test_the_share_over_target_counts_known_values_only():
    assert share_over([10.0, 13.0, None, 12.0, 15.0], 12.0) == 0.5
    assert share_over([None], 12.0) is None


def test_calibrated_needs_both_the_replicas_and_the_first_scale_up():
    close = Agreement(samples=100, within=95, first_scale_up_measured=30.0, first_scale_up_simulated=44.0)
    late = Agreement(samples=100, within=95, first_scale_up_measured=30.0, first_scale_up_simulated=46.0)
    one_sided = Agreement(samples=100, within=95, first_scale_up_measured=30.0, first_scale_up_simulated=None)
    neither = Agreement(samples=100, within=95, first_scale_up_measured=None, first_scale_up_simulated=None)
    assert close.calibrated and not late.calibrated
    assert not one_sided.calibrated and neither.calibrated


def test_the_readings_to_the_first_scale_up_are_each_change_from_the_step_on():
    readings = [
        Observed(-1.0, 1, 0.0, 0.0),
        Observed(0.0, 1, 0.0, 0.0),
        Observed(1.0, 1, 0.0, 0.0),  # the same reading as the sync before: left out
        Observed(15.0, 1, 0.0, 0.6),
        Observed(30.0, 4, 13.8, 2.1),
        Observed(45.0, 6, 18.1, 2.4),  # after the first scale-up
    ]
    assert [o.at for o in readings_to_first_scale_up(readings, 1)] == [0.0, 15.0, 30.0]
    # Runs saved before the second metric was recorded read it as None.
    assert Observed(**{"at": 0.0, "replicas": 1, "value": 0.0}).second is None
    assert [o.at for o in readings_to_first_scale_up(readings[:4], 1)] == [0.0, 15.0]


def test_the_simulated_syncs_to_the_first_scale_up_run_from_the_step_to_it():
    syncs = [Sync(at, 1, 1, desired, 0.0) for at, desired in ((-3.0, 1), (12.0, 1), (27.0, 3), (42.0, 6))]
    trace = Trace(syncs=syncs, replicas=[(0.0, 1), (27.0, 3), (42.0, 6)])
    assert [s.at for s in syncs_to_first_scale_up(trace, 1)] == [12.0, 27.0]
    # Never scaled: every sync from the step on.
    assert [s.at for s in syncs_to_first_scale_up(Trace(syncs=syncs[:2], replicas=[(0.0, 1)]), 1)] == [12.0]


def test_the_median_agreement_is_the_middle_seed():
    shares = [Agreement(10, within, 0.0, 0.0) for within in (9, 5, 7, 10)]
    assert median_agreement(shares).within == 7


def test_back_under_target_counts_from_the_average_going_over_it():
    # Under for 400 s, over for 600 s, then under: back at 1000 s, not at 0 s,
    # where the average had not yet gone over.
    readings = [(float(t), 5.0 if t < 400 or t >= 1000 else 30.0) for t in range(0, 2000, 15)]
    assert back_under(readings, 12.0, 0.0) == 1005.0  # the first reading under it, at 1005 s
    assert back_under_text(readings, 12.0, 0.0, " s") == "1005 s"


def test_an_average_never_over_the_target_is_never_over_not_back_at_once():
    readings = [(float(t), 5.0) for t in range(0, 2000, 15)]
    assert back_under(readings, 12.0, 0.0) is None
    assert back_under_text(readings, 12.0, 0.0) == "never over"
    assert back_under_text([(float(t), 30.0) for t in range(0, 2000, 15)], 12.0, 0.0) == "never"


def test_refused_percent_is_that_of_the_ten_minutes_after_the_change_whatever_the_runs_length():
    model = Model.from_chart_values(CHART_VALUES)
    percents = []
    for hours in (1, 2):
        case = scenario("step", model.pod_capacity, 5, hours)
        trace = Loop(model.hpa, model.pod, model.timing, "paced", 1).run(case.shape, case.seconds)
        assert trace.refused and max(trace.refused) < case.change_at + REFUSAL_WINDOW_SECONDS
        percents.append(
            figures(trace, model.hpa.target, 1, case.change_at, case.steady_from, case.seconds, case.refusals_until)
        )
    assert percents[0].refused_percent == percents[1].refused_percent > 0


@pytest.mark.parametrize(
    ("name", "span"),
    [("step", (60.0, 660.0)), ("spike", (600.0, 1320.0)), ("ramp", (60.0, 2460.0)), ("sine", (0.0, 14400.0))],
)
def test_refusals_are_counted_until_ten_minutes_after_the_load_settles_and_over_the_whole_sine(name, span):
    """A ramp climbs for 30 minutes and a sine peaks at half the run: ten
    minutes after the start would see neither's refusals."""
    case = scenario(name, 0.2, 5, 4)
    assert (case.change_at, case.refusals_until) == span
    # One refused and one answered inside the span, one answered just past it.
    trace = Trace(answered=[(span[1] - 2.0, 10.0), (span[1] + 1.0, 10.0)], refused=[span[1] - 1.0])
    assert refused_percent(trace, case.change_at, case.refusals_until) == 50.0


def test_back_under_target_names_a_run_without_readings_and_one_too_short_to_tell():
    """An HPA that never read a value (the adapter down) is not "never over";
    a run that ends before the 5 minutes under the target is not "never"."""
    assert back_under_text([], 12.0, 0.0) == "no readings"
    assert back_under_text([(float(t), None) for t in range(0, 600, 15)], 12.0, 0.0) == "no readings"
    short = [(0.0, 20.0), (15.0, 20.0), (39.0, 1.0), *[(float(t), 1.0) for t in range(45, 241, 15)]]
    assert back_under(short, 1.5, 0.0) is None
    assert back_under_text(short, 1.5, 0.0, " s") == "under only for the run's last 225 s (< 300 s hold)"


def test_every_run_of_a_seed_is_offered_the_same_arrivals():
    model = Model.from_chart_values(CHART_VALUES)

    def offered(hpa, fixed, hours):
        case = scenario("step", model.pod_capacity, 5, hours)
        trace = Loop(hpa, model.pod, model.timing, "poisson", 1, fixed_replicas=fixed).run(case.shape, case.seconds)
        # Those of the last minutes may still be held at the end, neither answered nor refused.
        return trace.arrived, sorted(at for at in [at for at, _ in trace.answered] + trace.refused if at < 3000)

    autoscaled = offered(model.hpa, None, 1)
    assert offered(None, 9, 1) == offered(None, 10, 1) == autoscaled
    # A longer run draws the same first hour.
    assert offered(model.hpa, None, 2)[1] == autoscaled[1]
