"""Launcher backends: how a job's compute is started.

One small interface (:class:`~common.launchers.base.Launcher`); the backend is
chosen by ``launcher.backend`` in the configuration.
"""

from __future__ import annotations

from common.config import Config
from common.launchers.base import Launch, Launcher
from common.storage import LocalStorage

__all__ = ["Launch", "Launcher", "make_launcher"]


def make_launcher(config: Config, storage: LocalStorage) -> Launcher:
    from common.launchers.inline import InlineLauncher

    return InlineLauncher(storage)
