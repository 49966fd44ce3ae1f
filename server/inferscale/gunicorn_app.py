"""gunicorn embedded: the pod's HTTP workers, built from `Settings`, talking to the model process."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from inferscale import gunicorn_conf
from inferscale.settings import Settings


class GunicornServer(BaseApplication):
    """The main instance (every route on PORT), or with `admin` the probes and /metrics on ADMIN_PORT."""

    def __init__(self, settings: Settings, model_socket: str, listener_fd: int, admin: bool = False):
        """`listener_fd`: the port's listening socket, bound by the supervisor."""
        self.settings = settings
        self.model_socket = model_socket
        self.listener_fd = listener_fd
        self.admin = admin
        super().__init__()

    def load_config(self) -> None:
        options = gunicorn_conf.admin_options if self.admin else gunicorn_conf.main_options
        for key, value in options(self.settings).items():
            self.cfg.set(key, value)
        self.cfg.set("bind", [f"fd://{self.listener_fd}"])

    def load(self):
        from inferscale.app import create_admin_app, create_app
        from inferscale.model_client import ModelClient

        factory = create_admin_app if self.admin else create_app
        return factory(self.settings, ModelClient(self.model_socket))
