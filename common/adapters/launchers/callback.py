"""The callback launcher: the job runs elsewhere and reports back by URL.

For compute this service does not start — a Tapis/Agave job, a Slurm script, an
Abaco actor. Nothing is started; the launch result holds the callback URL in Agave's
macro form (``...&status=${JOB_STATUS}``, with the job's uuid, token and a nonce)
and a ready Agave notification that posts every status change to it, which is what
the seed's proxy registered. Whatever runs the job posts its statuses there.
"""

from __future__ import annotations

from typing import Any

from pipelinejobs.adapters.launchers.base import STATUS_MACRO, Launch, Launcher


class CallbackLauncher(Launcher):
    name = "callback"

    def launch(self, launch: Launch) -> dict[str, Any]:
        url = launch.callback_url(STATUS_MACRO)
        return {
            "backend": self.name,
            "callback_url": url,
            "notifications": [{"url": url, "event": "*", "persistent": True}],
            "archive_path": launch.archive_path,
        }
