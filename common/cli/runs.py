"""``pipelinejobs runs create|list|show`` (issue 15): runs, named batches of jobs.

``create`` sends a ``create_run`` message to the launcher-proxy and waits for it;
``list`` and ``show`` read ``GET /runs`` and ``GET /runs/<uuid>`` (with the run's
jobs counted by state and its derived status). ``cancel`` and ``retry`` are bulk
actions over the run's jobs (:func:`pipelinejobs.cli.bulk.act` with the filter
``{run: uuid}``): the server picks the states — a cancel fails the run's unfinished
jobs, a retry retries its FAILED ones. Human output by default, the gateway's answer
as it came with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipelinejobs.cli.output import fields, flatten, printable, show, table
from pipelinejobs.errors import ValidationError

__all__ = ["add_command", "cmd_runs"]

#: A run's fields ``runs show`` prints before its counts, in this order.
RUN_FIELDS = (
    "uuid", "name", "status", "jobs", "pipeline_uuid", "priority", "owner", "tags",
    "domain_context", "created",
)  # fmt: skip


def tag_pair(value: str) -> tuple[str, str]:
    """``--tag``'s value on create: ``key=value``."""
    key, eq, text = value.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"a tag to set is key=value, not {value!r}")
    return key, text


def json_object(value: str) -> dict[str, Any]:
    """``--context``'s value: a JSON object."""
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--context is a JSON object: {exc}") from exc
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("--context is a JSON object, such as '{\"a\": 1}'")
    return parsed


def cmd_runs(args: argparse.Namespace) -> int:
    """runs create|list|show|cancel|retry."""
    from pipelinejobs.cli.remote import _call, _more

    if args.action == "create":
        return _create(args)
    if args.action in ("cancel", "retry"):
        from pipelinejobs.cli import bulk

        if not args.uuid:
            raise ValidationError(f"runs {args.action} needs the run's uuid", path="uuid")
        return bulk.act(args, args.action, {"run": args.uuid})
    if args.action == "show":
        if not args.uuid:
            raise ValidationError("runs show needs a uuid", path="uuid")
        answer = _call(args, "GET", f"/runs/{args.uuid}")
        if not args.json:
            run = answer["result"]
            shown = {k: run[k] for k in RUN_FIELDS if run.get(k) not in (None, {}, "")}
            lines = fields(flatten(shown))
            counts = {k: v for k, v in (run.get("counts") or {}).items() if v}
            lines.append("jobs by state: " + (", ".join(f"{k} {v}" for k, v in counts.items())
                                               or "none"))  # fmt: skip
            show(lines)
        return 0
    if args.uuid:
        raise ValidationError("runs list takes no uuid (runs show UUID shows one)", path="uuid")
    params: dict[str, Any] = {"limit": args.limit}
    for name in ("pipeline_uuid", "priority", "owner"):
        if getattr(args, name, None):
            params[name] = getattr(args, name)
    if args.filter_tag:
        params["tag"] = args.filter_tag
    answer = _call(args, "GET", "/runs", params)
    if args.json:
        return 0
    docs = answer["result"].get("runs") or []
    if not docs:
        show(["no runs"])
        return 0
    rows = ([d["uuid"], d.get("priority"), d.get("created"), d.get("name")] for d in docs)
    show(table(["UUID", "PRIORITY", "CREATED", "NAME"], rows))
    if answer["result"].get("next") is not None:
        show([_more(len(docs), None, args.limit)])
    return 0


def _create(args: argparse.Namespace) -> int:
    from pipelinejobs.cli.remote import completed

    if not args.pipeline_uuid or not args.name:
        raise ValidationError("runs create needs --pipeline-uuid and --name", path="--name")
    message: dict[str, Any] = {
        "action": "create_run",
        "pipeline_uuid": args.pipeline_uuid,
        "name": args.name,
    }
    if args.priority:
        message["priority"] = args.priority
    if args.set_tag:
        message["tags"] = dict(args.set_tag)
    if args.context is not None:
        message["domain_context"] = args.context
    result = completed(args, "launcher-proxy", message)
    if result is None:
        return 1
    if args.json:
        return 0
    verb = "created" if result.get("created") else "already exists (unchanged)"
    show([f"run {printable(result.get('uuid'))} {verb}: {printable(result.get('name'))}, "
          f"priority {printable(result.get('priority'))}"])  # fmt: skip
    return 0


def add_command(add: Any) -> None:
    """Register ``runs`` with the remote commands' ``add`` helper."""
    from pipelinejobs.cli import bulk

    p = add(
        "runs",
        cmd_runs,
        "create, list or show runs (named batches of a pipeline's jobs); cancel a run's "
        "unfinished jobs or retry its failed ones",
    )
    p.add_argument("action", choices=["create", "list", "show", "cancel", "retry"])
    p.add_argument("uuid", nargs="?", help="show, cancel, retry: the run's uuid (126…)")
    p.add_argument("--pipeline-uuid", help="create: the run's pipeline; list: only its runs")
    p.add_argument("--name", help="create: the run's name (with the pipeline, its identity)")
    p.add_argument(
        "--priority", choices=["low", "medium", "high"], help="create (default medium); list"
    )
    p.add_argument(
        "--set-tag",
        type=tag_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="create: a tag of the run (repeatable)",
    )
    p.add_argument("--context", type=json_object, help="create: domain_context, a JSON object")
    p.add_argument("--tag", dest="filter_tag", metavar="KEY:VALUE", help="list: only runs with it")
    p.add_argument("--owner", help="list: only runs created by this key (me: your own)")
    p.add_argument("--limit", type=int, default=50)
    bulk.add_flow_options(p, "cancel, retry: ")
