"""The WSGI entry point for a production gateway: ``gunicorn 'pipelinejobs.gateway.wsgi:create()'``.

The gateway only submits: its runtime publishes to the configured broker and the
actors run in ``pipelinejobs worker`` processes. Configuration comes from
``config.yml``/environment as everywhere else; each gunicorn worker process builds
its own connections on first use.
"""

from __future__ import annotations

from flask import Flask

from pipelinejobs.config import load_config
from pipelinejobs.gateway import create_app
from pipelinejobs.observability import logs, multiprocess
from pipelinejobs.runtime.system import System


def create() -> Flask:
    """Build the gateway app from the environment's configuration."""
    config = load_config()
    if not logs.configured():  # gunicorn started without pipelinejobs' logger class
        logs.configure(config.logging)
    # Each worker writes its metrics where the master's hooks (gunicorn_hooks) claimed.
    multiprocess.join(config)
    return create_app(System(config).runtime)
