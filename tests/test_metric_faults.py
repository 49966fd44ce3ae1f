"""Faults in the metric pipeline under steady load, on the real stack: no
scale-in while the HPA's data is missing, and none when it comes back.

The load (2.5 requests/s) is more than the 3 pods that maxReplicas allows
serve within the target (their average is about twice it), so the HPA's
right answer is 3 throughout: any scale-in is the fault's doing, never a
fluctuation of a load near a threshold.

Before the rules read "no data" as missing, a Prometheus restart made every
busy pod read 0 for a scrape or two, and the HPA cut a loaded Deployment in
half. Each fault that is a state (the adapter down, Prometheus down, one
pod's scrapes rejected) holds for longer than FAST_LOOP's scale-down
stabilization window (20 s), so a wrong 0 would have had time to act; after
each, and after the faults that are events (a server killed, a model process
stopped until the pod's supervisor kills it, the API server stopped until
KubeAPIDown fires), the HPA is watched for two more windows.

Prometheus down is the one fault no rule of its own can report: Alertmanager
relays the always-firing Watchdog to a dead man's switch (a receiver on the
host here), and the heartbeats stop while Prometheus is gone, then resume.

Scrapes are every 10 s here (a 40 s window, four scrapes as the chart's
defaults keep), not FAST_LOOP's 2 s: after a restart a pod has one sample
for a whole scrape interval, two HPA syncs, so whatever the rules say of
it then reaches the HPA. The adapter relists every 20 s, twice the scrape
interval as the shipped values keep it at three times: with FAST_LOOP's 5 s,
every other relist found no sample and the HPA lost its metrics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from heartbeats import HeartbeatReceiver

from localcluster.hpa import HpaRecorder
from localcluster.load import headless_locust
from localcluster.loopback import free_port
from localcluster.node import HOST_IP, run
from localcluster.processes import wait_until
from localcluster.stack import FAST_LOOP, LocalStack, StackConfig, merged

STABILIZATION = FAST_LOOP["chart_values"]["autoscaling"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
FAULT_SECONDS = 3 * STABILIZATION
ADAPTER = ("-n", "monitoring", "deployment/prometheus-adapter")
PROMETHEUS = ("-n", "monitoring", "prometheus/kube-prometheus-stack-prometheus")
# 2.5 requests/s against pods that serve 1/s each, as the e2e test's load.
USERS, USER_RPS = 5, 0.5
MAX_REPLICAS = 3
# Watchdog's heartbeat period, and Prometheus's resend delay: Alertmanager
# holds an alert Prometheus stopped sending for 4 x max(resend delay,
# evaluation interval) = 40 s here (4 min with Prometheus's defaults).
HEARTBEAT_SECONDS = 5
RESEND_DELAY = "5s"
# A gap this long is no jitter of Alertmanager's 5 s flushes: the switch would page.
SILENCE_SECONDS = 4 * HEARTBEAT_SECONDS
# KubeAPIDown at once: the chart's 15m is longer than any outage a test can hold
# the API server down for (the node's lease expires after 50 s).
API_DOWN_FOR = "0s"
# The pods' model-process watchdog (server.modelWatchdogSeconds): short, so a
# stopped model process is killed within a stabilization window.
WATCHDOG_SECONDS = 5


def heartbeat_to(url: str) -> dict:
    """Laid over prometheus-values.yaml's Alertmanager config: Watchdog to `url`, every HEARTBEAT_SECONDS."""
    period = f"{HEARTBEAT_SECONDS}s"
    return {
        "route": {
            "routes": [
                {
                    "receiver": "deadmansswitch",
                    "matchers": ['alertname = "Watchdog"'],
                    "group_wait": "0s",
                    "group_interval": period,
                    "repeat_interval": period,
                }
            ]
        },
        "receivers": [{"name": "null"}, {"name": "deadmansswitch", "webhook_configs": [{"url": url}]}],
    }


def scaling_active(stack: LocalStack) -> bool:
    conditions = stack.hpa().get("status", {}).get("conditions") or []
    return any(c["type"] == "ScalingActive" and c["status"] == "True" for c in conditions)


def pinned(recorder: HpaRecorder, seconds: float = 20) -> bool:
    """At maxReplicas, current and desired, for the last `seconds`."""
    recent = [s for s in recorder.samples if s.at >= recorder.elapsed() - seconds]
    return recorder.elapsed() >= seconds and all(s.replicas == s.desired == MAX_REPLICAS for s in recent)


def lowest(recorder: HpaRecorder, since: float) -> int:
    return min(s.replicas for s in recorder.samples if s.at >= since)


def began(recorder: HpaRecorder, fault: str) -> float:
    """The fault's start on the recorder's clock, printed for reading the timeline."""
    print(f"{recorder.elapsed():.0f} s: {fault}")
    return recorder.elapsed()


def firing_for(stack: LocalStack, alertname: str, **labels: str) -> bool:
    """`alertname` fires with these labels: for this pod and cause, not only somewhere."""
    return any(labels.items() <= firing.items() for firing in stack.firing(alertname))


def restarted_and_ready(stack: LocalStack, name: str) -> bool:
    pod = stack.api.get(f"/api/v1/namespaces/{stack.config.namespace}/pods/{name}")
    status = pod["status"]["containerStatuses"][0]
    return status["restartCount"] >= 1 and status["ready"]


def recovered(stack: LocalStack, recorder: HpaRecorder, fault: str, steady: int) -> None:
    """The HPA reads its metric again, and holds its pods for twice the stabilization window after."""
    wait_until(lambda: scaling_active(stack) or None, f"ScalingActive after {fault}", 120, interval=2)
    back = recorder.elapsed()
    time.sleep(2 * STABILIZATION)
    assert lowest(recorder, back) >= steady, (fault, recorder.samples[-20:])


@pytest.mark.cluster
def test_missing_metric_data_never_scales_a_loaded_deployment_in(tmp_path):
    timing = {
        "autoscaling": {"maxReplicas": MAX_REPLICAS, "rateWindow": "40s"},
        "serviceMonitor": {"interval": "10s"},
        "server": {"modelWatchdogSeconds": WATCHDOG_SECONDS},
    }
    loop = {
        **FAST_LOOP,
        "scrape_interval": "10s",
        "rate_window": "40s",
        "relist_interval": "20s",
        "chart_values": merged(FAST_LOOP["chart_values"], timing),
    }
    switch_port = free_port()
    with (
        LocalStack(
            StackConfig(
                workdir=tmp_path / "stack",
                alertmanager_config=heartbeat_to(f"http://{HOST_IP}:{switch_port}/"),
                alert_resend_delay=RESEND_DELAY,
                api_down_for=API_DOWN_FOR,
                **loop,
            )
        ) as stack,
        HeartbeatReceiver(HOST_IP, switch_port) as switch,
    ):
        stack.wait_at_rest(240)
        # Prometheus -> Alertmanager -> the switch, before any fault.
        wait_until(lambda: switch.heartbeats_since(0) or None, "Watchdog's first heartbeat", 120, interval=1)
        load = subprocess.Popen(
            headless_locust(stack.service_url, USERS, 900, "--csv", str(tmp_path / "load"), "--only-summary"),
            env={**os.environ, "LOAD_USER_RPS": str(USER_RPS), "LOAD_TIMEOUT_SECONDS": "120"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        recorder = HpaRecorder(stack.hpa)
        recorder.start()
        try:
            wait_until(lambda: pinned(recorder) or None, f"the HPA at {MAX_REPLICAS} pods under load", 300, interval=2)
            steady = MAX_REPLICAS

            # The adapter down: the HPA cannot read its metric, says so, keeps its pods,
            # and the chart's alert fires from kube-state-metrics' ScalingActive=false.
            start = began(recorder, "prometheus-adapter scaled to 0")
            stack.kubectl("scale", "--replicas=0", *ADAPTER)
            wait_until(lambda: not scaling_active(stack) or None, "ScalingActive=False", 120, interval=2)
            wait_until(
                lambda: "InferenceHPAMetricUnavailable" in stack.firing_alerts() or None,
                "InferenceHPAMetricUnavailable firing",
                120,
                interval=2,
            )
            time.sleep(max(0.0, FAULT_SECONDS - (recorder.elapsed() - start)))
            stack.kubectl("scale", "--replicas=1", *ADAPTER)
            assert lowest(recorder, start) >= steady, recorder.samples[-40:]
            recovered(stack, recorder, "the adapter's return", steady)

            # Prometheus down for three stabilization windows, then back with an
            # empty TSDB (the operator's default storage is an emptyDir): every
            # pod has one sample, then two, and must read as missing until then.
            start = began(recorder, "Prometheus stopped")
            stack.kubectl("patch", *PROMETHEUS, "--type=merge", "-p", '{"spec": {"replicas": 0}}')
            wait_until(lambda: not stack.prometheus_ready() or None, "Prometheus stopped", 120, interval=1)
            stopped = time.monotonic()
            # What pages: the switch hears nothing once Alertmanager lets Watchdog expire.
            wait_until(
                lambda: switch.silent_for() >= SILENCE_SECONDS or None,
                f"no heartbeat for {SILENCE_SECONDS} s",
                180,
                interval=1,
            )
            print(f"the switch silent for {SILENCE_SECONDS} s at {time.monotonic() - stopped:.0f} s after the stop")
            time.sleep(max(0.0, FAULT_SECONDS - (time.monotonic() - stopped)))
            stack.kubectl("patch", *PROMETHEUS, "--type=merge", "-p", '{"spec": {"replicas": 1}}')
            wait_until(lambda: stack.prometheus_ready() or None, "Prometheus back", 180, interval=1)
            back = time.monotonic()
            wait_until(lambda: switch.heartbeats_since(back) or None, "heartbeats again", 120, interval=1)
            print(f"heartbeats again {time.monotonic() - back:.0f} s after Prometheus was ready")
            assert lowest(recorder, start) >= steady, recorder.samples[-60:]
            recovered(stack, recorder, "Prometheus's restart", steady)

            # One pod's scrapes rejected on the node's network: that pod reads as
            # missing, which the HPA counts as at target when it would scale in.
            pod = stack.api.items(f"/api/v1/namespaces/{stack.config.namespace}/pods")[0]
            block = ("FORWARD", "-d", pod["status"]["podIP"], "-p", "tcp", "--dport", "8081", "-j", "REJECT")
            start = began(recorder, "one pod's scrapes rejected")
            run("iptables", "-I", *block, netns=True)
            try:
                wait_until(
                    lambda: "InferenceScrapeFailing" in stack.firing_alerts() or None,
                    "InferenceScrapeFailing firing",
                    120,
                    interval=2,
                )
                time.sleep(max(0.0, FAULT_SECONDS - (recorder.elapsed() - start)))
            finally:
                run("iptables", "-D", *block, netns=True)
            assert lowest(recorder, start) >= steady, recorder.samples[-40:]
            recovered(stack, recorder, "the scrapes' return", steady)

            # A pod's server killed as the OOM killer would: the kubelet restarts
            # it in place, its counters start from 0 (rate() takes that for a
            # reset), and until it has two samples again it reads as missing.
            start = began(recorder, "a server killed")
            container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
            stack.node.kill_container(container_id)
            wait_until(
                lambda: restarted_and_ready(stack, pod["metadata"]["name"]) or None,
                "the killed server restarted and ready",
                120,
                interval=1,
            )
            print(f"ready again after {recorder.elapsed() - start:.1f} s")
            wait_until(
                lambda: firing_for(stack, "InferencePodRestarted", pod=pod["metadata"]["name"], container="server"),
                "InferencePodRestarted firing for the killed pod",
                120,
                interval=2,
            )
            assert lowest(recorder, start) >= steady, recorder.samples[-40:]
            recovered(stack, recorder, "the pod's restart", steady)

            # The pod's model process stopped on the node (alive, not running, as
            # under a native call that holds the GIL): the pod's supervisor kills
            # it after the watchdog and starts another, in the same container,
            # which Kubernetes' restart count never shows; the chart's alert does.
            start = began(recorder, "a model process stopped")
            pod = stack.api.get(f"/api/v1/namespaces/{stack.config.namespace}/pods/{pod['metadata']['name']}")
            container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
            model_process = stack.node.container_process(container_id, lambda status: status["Name"] == "model-process")
            os.kill(model_process, signal.SIGSTOP)
            wait_until(
                lambda: firing_for(
                    stack, "InferenceModelProcessRestarted", pod=pod["metadata"]["name"], reason="wedged"
                ),
                "InferenceModelProcessRestarted firing for the stopped pod, as wedged",
                120,
                interval=2,
            )
            assert not os.path.exists(f"/proc/{model_process}")
            print(f"InferenceModelProcessRestarted firing {recorder.elapsed() - start:.1f} s after the stop")
            assert lowest(recorder, start) >= steady, recorder.samples[-40:]
            recovered(stack, recorder, "the model process's restart", steady)

            # The API server down until KubeAPIDown fires, then started again:
            # nobody can read or write the HPA meanwhile, and after it every watch
            # and the aggregated metrics API come back; the HPA's next syncs must
            # not act on a gap. Prometheus scraped it all along, so the alert says
            # so before the fault and clears after it.
            assert "KubeAPIDown" not in stack.firing_alerts()
            start = began(recorder, "the API server stopped")
            with stack.control_plane.apiserver_stopped():
                wait_until(lambda: "KubeAPIDown" in stack.firing_alerts() or None, "KubeAPIDown firing", 60, interval=1)
                print(f"KubeAPIDown firing {recorder.elapsed() - start:.1f} s after the stop")
            print(f"the API server ready again {recorder.elapsed() - start:.1f} s after the stop")
            wait_until(
                lambda: "KubeAPIDown" not in stack.firing_alerts() or None, "KubeAPIDown resolved", 60, interval=1
            )
            assert lowest(recorder, start) >= steady, recorder.samples[-40:]
            recovered(stack, recorder, "the API server's restart", steady)
        finally:
            samples = recorder.stop()
            load.terminate()
            load.wait(timeout=120)
            timeline = " ".join(f"{s.at:.0f}s:{s.replicas}/{s.desired}@{s.metric}/{s.second}" for s in samples)
            print(f"HPA timeline ({recorder.failed_reads} reads failed):", timeline)
