"""A ceiling for vs_kserve.py, not a server to ship: inferscale with the model inside each HTTP worker.

The shipped pod runs one model process that owns every slot, and each request
crosses a Unix socket to it and back. This runs the same Flask app, the same
gunicorn options and worker class, with `create_app`'s in-process model in
every worker instead: no crossing, no hand-over between processes. What it
gives up is why it does not ship: each worker has its own slots and queue (a
request waits on a busy worker while another has a free slot, issue 7's
first finding), each worker loads its own copy of the model, and gevent turns
the slot threads into greenlets, so a CPU-bound inference would stop its
worker's other requests. At 0 s inferences none of that costs anything, so
its throughput bounds what any design with the model inside the workers
could reach; a pod-wide admission shared between them would only add work.
To make the bound generous, it also parses HTTP with gunicorn's C parser
(gunicorn_h1c; vs_kserve.py installs it beside the benchmark, never into the
project) and runs with ACCESS_LOG=false (vs_kserve.py sets it): the most a
Flask app on gunicorn with full validation and every metric could get here.

    PYTHONPATH=DIR_WITH_GUNICORN_H1C python bench/model_in_workers.py PORT    # settings from the environment
"""

from __future__ import annotations

import argparse
import importlib
import os

from gunicorn.app.base import BaseApplication

from inferscale import gunicorn_conf, multiprocess
from inferscale.app import create_app
from inferscale.settings import Settings


class ModelInWorkers(BaseApplication):
    def __init__(self, settings: Settings, bind: str):
        self.settings = settings
        self.bind = bind
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_conf.main_options(self.settings).items():
            self.cfg.set(key, value)
        # gunicorn's own C parser, which the shipped server does not use
        # (bench/README.md, "The ceiling"); main() has checked that it imports.
        self.cfg.set("http_parser", "fast")
        self.cfg.set("bind", [self.bind])

    def load(self):
        return create_app(self.settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int, help="the loopback port to serve on")
    args = parser.parse_args()
    # gunicorn looks for it only as a request arrives, then answers 500: fail at start instead.
    importlib.import_module("gunicorn_h1c")
    # Every worker's metric files in one directory, as the shipped pod keeps them.
    multiprocess.prepare_directory(os.environ[multiprocess.ENV_VAR])
    ModelInWorkers(Settings(), f"127.0.0.1:{args.port}").run()


if __name__ == "__main__":
    main()
