"""gunicorn embedded: the project's config module plus the app factory."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication


class GunicornServer(BaseApplication):
    def load_config(self) -> None:
        # Imported here, not at module level: importing it reads the settings
        # and fixes prometheus_client's multiprocess directory.
        from inferscale import gunicorn_conf

        for key in self.cfg.settings:
            if hasattr(gunicorn_conf, key):
                self.cfg.set(key, getattr(gunicorn_conf, key))

    def load(self):
        from inferscale.app import create_app

        return create_app()
