"""What every PipelineJobs actor shares: schemas, identifiers, tokens, lifecycle, store.

``from pipelinejobs import ManagedPipelineJob`` (and ``ReactorManagedPipelineJob``)
is the client library's job class (:mod:`pipelinejobs.client`), loaded on first use:
importing ``pipelinejobs`` itself loads nothing else.
"""

from __future__ import annotations

__version__ = "0.1.0"

#: Names this package lends from its client library, imported when first asked for.
_CLIENT = ("ManagedPipelineJob", "ReactorManagedPipelineJob")


def __getattr__(name: str) -> object:
    if name in _CLIENT:
        from pipelinejobs.client import managed

        return getattr(managed, name)
    raise AttributeError(f"module 'pipelinejobs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_CLIENT])
