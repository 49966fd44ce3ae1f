"""`python -m localcluster demo`: the whole loop on this machine until Ctrl-C (what `make demo` runs)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import sys
import traceback
from pathlib import Path

from localcluster.binaries import MissingBinary, binary
from localcluster.node import UnsupportedMachine, require_cgroup_v1
from localcluster.processes import LockHeld, ManagedProcess, ProcessGroup, hold_lock
from localcluster.repo import LOCUSTFILE, REPO
from localcluster.stack import FAST_LOOP, LocalStack, StackConfig, pod_capacity


class DemoRunning(RuntimeError):
    """Another demo holds this workdir."""


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
    # Ctrl-C, a plain `kill` and a closed terminal all end in the same
    # teardown. Set explicitly: Python leaves SIGINT alone when it starts
    # ignored (`make demo &` from a script), and Ctrl-C would then never stop
    # the demo. A SIGHUP ignored from the start is `nohup make demo`: it must
    # outlive the terminal.
    stop_signals = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        stop_signals.append(signal.SIGHUP)
    for stop_signal in stop_signals:
        signal.signal(stop_signal, signal.default_int_handler)
    try:
        require_cgroup_v1()
        lock = hold_workdir(args.workdir)
    except (UnsupportedMachine, DemoRunning, OSError) as refusal:
        print(refusal, file=sys.stderr)
        return 1
    try:
        # Under the lock: a running demo's workdir is never wiped.
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
        print(
            "building the image, starting the control plane, the node, the chart, Prometheus, "
            "Alertmanager and the adapter ...",
            flush=True,
        )
        with LocalStack(config) as stack, ProcessGroup() as load:
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
            load.start(locust)
            locust.wait_http_ok(f"http://127.0.0.1:{args.locust_port}/", 60)
            print(
                "waiting for the HPA's metrics (a rate window of scrapes, then the adapter's relist) "
                "and its minReplicas pods Ready ...",
                flush=True,
            )
            stack.wait_at_rest()
            print(banner(stack, args, user_rps), flush=True)
            signal.pause()
    except KeyboardInterrupt:
        print("stopped; everything the demo started has exited.", flush=True)
    except MissingBinary as missing:
        print(missing, file=sys.stderr)
        return 1
    except Exception as error:
        print(failure(error, args.workdir), file=sys.stderr)
        return 1
    finally:
        os.close(lock)
    return 0


def hold_workdir(workdir: Path) -> int:
    """A lock beside the workdir, held until the demo exits (the kernel lets go
    of it even on SIGKILL): a second demo must not wipe a running one's
    kubeconfigs, certificates and etcd data. The file stays: removing it would
    let a third demo lock a new file while the second still holds the old one."""
    workdir = workdir.resolve()
    path = workdir.parent / f"{workdir.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return hold_lock(path)
    except LockHeld as held:
        raise DemoRunning(
            f"a demo is already running in {workdir} (pid {held.holder} holds {path}); "
            f"stop it first: Ctrl-C where it runs, or kill {held.holder}"
        ) from None


def failure(error: Exception, workdir: Path) -> str:
    """One line for the terminal; the whole message (a log's tail, kubectl's
    stderr) and the traceback go to a file beside the processes' logs."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    summary = lines[0].removesuffix(":") if lines else type(error).__name__
    report = workdir / "demo-failure.txt"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        report.write_text("".join(traceback.format_exception(error)))
    except OSError as unwritable:
        return f"demo failed: {summary} (its traceback could not be written to {report}: {unwritable})"
    return f"demo failed: {summary} (details and traceback in {report}; the processes' logs under {workdir})"


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
