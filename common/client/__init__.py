"""The Python client of a running PipelineJobs gateway (``pipelinejobs.client``).

* :class:`Client` — HTTP calls with retries and ``Idempotency-Key``\\ s (what the CLI uses);
* :class:`ManagedPipelineJob` — the seed's library class: create a job for a pipeline
  and drive it through its lifecycle from wherever its compute runs;
* :class:`ReactorManagedPipelineJob` — the same, configured from a reactor's
  ``config.yml`` ``pipelines`` stanza and ``_REACTOR_PIPELINES_*`` secrets.

Standard library only (``config.yml`` is read with PyYAML, a dependency of the
package), and nothing of the server is imported.
"""

from __future__ import annotations

from pipelinejobs.client.http import Client, ClientError
from pipelinejobs.client.managed import (
    ManagedPipelineJob,
    ManagedPipelineJobError,
    ReactorManagedPipelineJob,
    reactor_settings,
)

__all__ = [
    "Client",
    "ClientError",
    "ManagedPipelineJob",
    "ManagedPipelineJobError",
    "ReactorManagedPipelineJob",
    "reactor_settings",
]
