"""Capturing the process log as it is written: the formatter's output, not records.

``capture(format)`` configures the process log (``pipelinejobs.observability.logs``)
onto a string buffer, as a server command does onto stderr, and restores the root
logger (its handlers, its level, the quietened loggers) afterwards, so a test sees
exactly the text an operator would and leaves nothing behind for the next one.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from pipelinejobs.observability import logs


@contextmanager
def capture(format: str = "human", level: str = "INFO") -> Iterator[io.StringIO]:  # noqa: A002
    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in logs.CHATTY}
    buffer = io.StringIO()
    logs.configure(format=format, level=level, stream=buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(root_level)
        for name, value in levels.items():
            logging.getLogger(name).setLevel(value)
