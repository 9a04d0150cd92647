"""``pipelinejobs worker`` whose jobs-manager misbehaves when an event asks it to, for
the time-limit tests: an event whose ``data`` holds ``{"spin": s}`` keeps running
Python code for s seconds, ``{"block": s}`` sleeps s seconds (blocked in C, where an
interruption cannot land). Run as ``python -m tests.integration.slow_worker worker ...``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from pipelinejobs.actors.jobs_manager import ACTOR
from pipelinejobs.cli import main

handle = ACTOR.handle


def slow(ctx: Any, msg: Any) -> Any:
    data = msg.body.get("data") or {}
    if "spin" in data:
        end = time.monotonic() + float(data["spin"])
        while time.monotonic() < end:
            pass
    if "block" in data:
        time.sleep(float(data["block"]))
    return handle(ctx, msg)


if __name__ == "__main__":
    ACTOR.handle = slow  # type: ignore[method-assign]
    sys.exit(main(sys.argv[1:]))
