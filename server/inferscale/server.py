"""gunicorn embedded: the HTTP workers, built from `Settings`, talking to the model process."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from inferscale import gunicorn_conf
from inferscale.settings import Settings


class GunicornServer(BaseApplication):
    def __init__(self, settings: Settings, model_socket: str):
        self.settings = settings
        self.model_socket = model_socket
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_conf.options(self.settings).items():
            self.cfg.set(key, value)

    def load(self):
        from inferscale.app import create_app
        from inferscale.model_client import ModelClient

        return create_app(self.settings, ModelClient(self.model_socket))
