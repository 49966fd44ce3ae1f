"""`python -m localcluster demo`: the whole loop on this machine until Ctrl-C (what `make demo` runs)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import sys
from pathlib import Path

from localcluster.binaries import MissingBinary, binary
from localcluster.processes import ManagedProcess
from localcluster.repo import LOCUSTFILE, REPO
from localcluster.stack import FAST_LOOP, LocalStack, StackConfig, pod_capacity


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the autoscaling loop until interrupted")
    demo.add_argument("--workdir", type=Path, default=REPO / ".cache" / "demo")
    demo.add_argument(
        "--node-port", type=int, default=30080, help="the Service's NodePort, on the node's address (10.87.0.2)"
    )
    demo.add_argument(
        "--prometheus-node-port",
        type=int,
        default=30090,
        help="Prometheus's NodePort (its web UI and API), on the node's address",
    )
    demo.add_argument("--locust-port", type=int, default=8089)
    demo.add_argument(
        "--fast", action="store_true", help="1 s inferences and second-scale windows instead of the chart's defaults"
    )
    args = parser.parse_args(argv)
    return run_demo(args)


def run_demo(args) -> int:
    if os.geteuid() != 0:
        print(
            "the demo runs a real node (containerd, the kubelet, kube-proxy, iptables): run it as root", file=sys.stderr
        )
        return 1
    # Ctrl-C and a plain `kill` both end in the same teardown. Set explicitly:
    # Python leaves SIGINT alone when it starts ignored (`make demo &` from a
    # script), and Ctrl-C would then never stop the demo.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    shutil.rmtree(args.workdir, ignore_errors=True)
    config = StackConfig(
        workdir=args.workdir,
        node_port=args.node_port,
        prometheus_node_port=args.prometheus_node_port,
    )
    if args.fast:
        config = dataclasses.replace(config, **FAST_LOOP)
    # One pod's capacity per user in either timing, so "users" reads as "pods
    # needed"; a LOAD_USER_RPS of the caller's own wins.
    user_rps = os.environ.get("LOAD_USER_RPS") or f"{pod_capacity(config):g}"
    try:
        print(
            "building the image, starting the control plane, the node, the chart, Prometheus, "
            "Alertmanager and the adapter ...",
            flush=True,
        )
        with LocalStack(config) as stack:
            locust = ManagedProcess(
                "locust",
                [
                    sys.executable,
                    "-m",
                    "locust",
                    "-f",
                    str(LOCUSTFILE),
                    "--host",
                    stack.service_url,
                    "--web-host",
                    "127.0.0.1",
                    "--web-port",
                    str(args.locust_port),
                ],
                args.workdir / "locust.log",
                env={**os.environ, "LOAD_USER_RPS": user_rps},
            )
            locust.start()
            try:
                locust.wait_http_ok(f"http://127.0.0.1:{args.locust_port}/", 60)
                print(
                    "waiting for the HPA's metrics (a rate window of scrapes, then the adapter's relist) ...",
                    flush=True,
                )
                stack.wait_for_hpa_metric()
                print(banner(stack, args, user_rps), flush=True)
                signal.pause()
            finally:
                locust.stop()
    except KeyboardInterrupt:
        print("stopped; everything the demo started has exited.", flush=True)
    except MissingBinary as missing:
        print(missing, file=sys.stderr)
        return 1
    return 0


def banner(stack: LocalStack, args, user_rps: str) -> str:
    namespace = stack.config.namespace
    doctor = Path(sys.executable).parent / "inferscale"
    release = stack.config.release
    kubectl = binary("kubectl")  # the one built at the cluster's version: a machine may have none
    return f"""
inferscale demo is up (logs in {args.workdir}).
  service (NodePort):    {stack.service_url}
      curl -s {stack.service_url}/predict -H 'Content-Type: application/json' -d '{{"features": [1, 2, 3]}}'
  locust web UI:         http://127.0.0.1:{args.locust_port}
      each user sends {user_rps} requests/s, one pod's worth (LOAD_USER_RPS)
  Prometheus UI:         {stack.prometheus_url}   (queries: docs/promql.md)
  Alertmanager API:      {stack.alertmanager_url}   (the alerts it holds, Watchdog always among them:)
      {binary("amtool")} --alertmanager.url={stack.alertmanager_url} alert
  watch the HPA:
      {kubectl} --kubeconfig {stack.kubeconfig} get hpa -n {namespace} -w
  and the pods:
      {kubectl} --kubeconfig {stack.kubeconfig} get pods -n {namespace} -w
  check every link from the pods to the HPA (names the first broken one):
      {doctor} doctor --kubeconfig {stack.kubeconfig} -n {namespace} --release {release}
Ctrl-C stops everything.
ready
"""


if __name__ == "__main__":
    sys.exit(main())
