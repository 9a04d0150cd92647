"""``pipelinejobs serve`` whose broker delivers every launch twice, for the Slurm tests.

Each launcher-proxy execution, once run, is marked RUNNING again and delivered a
second time — what the broker does when a worker dies after the launch's effects but
before it recorded the end (acks_late). The second delivery must find the batch job
the first submitted, by its name, and submit nothing. Run as ``python -m
tests.integration.redelivering_serve serve ...``.
"""

from __future__ import annotations

import sys
from typing import Any

from pipelinejobs.cli import main
from pipelinejobs.runtime.dispatch import Runtime

deliver = Runtime.deliver


def deliver_launches_twice(
    self: Runtime, alias: str, execution_id: str, *args: Any, **kwargs: Any
) -> Any:
    done = deliver(self, alias, execution_id, *args, **kwargs)
    if alias != "launcher-proxy" or done is None or done.get("attempts", 1) != 1:
        return done
    if done["status"] != "COMPLETE" or done["message"].get("action"):
        return done  # only a launch that went through is delivered again
    self.store.update(
        "executions", execution_id, version=done["version"], set={"status": "RUNNING"}
    )
    return deliver(self, alias, execution_id, *args, **kwargs)


if __name__ == "__main__":
    Runtime.deliver = deliver_launches_twice  # type: ignore[method-assign]
    sys.exit(main(sys.argv[1:]))
