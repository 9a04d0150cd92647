"""``pipelinejobs bulk`` (issue 15): cancel, retry, retire or tag every job a filter
selects, as one bulk action of the jobs-manager (:mod:`pipelinejobs.domain.bulk`).

``bulk OPERATION --filter key=value ...`` runs the whole flow a person would by hand:

1. the **dry run** (``dry_run: true``): how many jobs the operation acts on, how many
   the filter selects in any state, the states it acts on and a sample — printed;
2. the **confirmation**: ``Cancel 4 jobs? [y/N]`` on a terminal; ``--yes`` answers it,
   ``--confirm N`` sends N without asking (a script repeating the count it saw). Off a
   terminal without either, or answered no, nothing is changed and it says how to go on;
3. the **real one**, confirming the count (a filter that now selects another number
   is refused, 409: exit 1 with the gateway's message, which says to dry-run again);
4. **following** it at ``GET /bulk/<id>`` until it is COMPLETE (or FAILED, REFUSED),
   its progress on stderr as :mod:`pipelinejobs.cli.watch` shows an indexing's; then
   a summary (done, errors, skipped) and every job that failed or was refused.

``runs cancel|retry RUN`` is the same flow with the filter ``{run: RUN}``
(:mod:`pipelinejobs.cli.runs`). ``bulk list`` lists bulk actions, ``bulk watch ID``
follows one (again). Exit codes: 0 when every job was done; 1 when some failed or were
refused, the action was refused, or nothing was sent (declined, not confirmed); 2 an
error (a bad filter, an unreachable gateway, ``--timeout``). ``--json`` prints the
gateway's answers as they came, one JSON document each: the dry run's, the real one's,
then the followed view's pages of failures (``errors=true``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import Any

from pipelinejobs.cli.output import fields, printable, show, table, text, write_json
from pipelinejobs.cli.remote import ClientError, _call, _client, _more, job_states, tag_pair
from pipelinejobs.cli.watch import Bar
from pipelinejobs.domain import bulk, job_filter
from pipelinejobs.errors import ValidationError

__all__ = ["act", "add_command", "add_flow_options", "cmd_bulk", "filter_pair", "progress_line"]

MESSAGES = "/actors/v2/jobs-manager/messages"
#: What ``--filter`` takes: the parameters of ``GET /jobs``.
FILTER_KEYS = job_filter.FIELDS
#: Keys ``--filter`` may repeat (a list in the message); the others are given once.
REPEATABLE = ("state", "linkage")
#: Where a bulk action's status stops changing.
FINAL = frozenset({"COMPLETE", "FAILED", "REFUSED"})
#: Failures read per page of ``GET /bulk/<id>?errors=true`` (the gateway's maximum).
PAGE = 500


def filter_pair(value: str) -> tuple[str, str]:
    """``--filter``'s value: ``key=value``, the key one of :data:`FILTER_KEYS`
    (``state=failed,running``: states in any case, comma-separated)."""
    key, eq, given = value.partition("=")
    key = key.strip()
    if key not in FILTER_KEYS:
        raise argparse.ArgumentTypeError(
            f"unknown filter {key!r}; the filters are {', '.join(FILTER_KEYS)} "
            f"(--filter key=value, e.g. state=FAILED, run=126…, tag=k:v, owner=me)"
        )
    if not eq or not given:
        raise argparse.ArgumentTypeError(f"--filter takes key=value, not {value!r}")
    if key == "state":
        return key, ",".join(job_states(given))
    return key, given


def filter_of(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The message's ``filter`` from the ``--filter`` pairs: ``state`` and ``linkage``
    repeat (a list), any other key is given once."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key == "state":
            states = out.setdefault(key, [])
            states.extend(s for s in value.split(",") if s not in states)
        elif key == "linkage":
            out.setdefault(key, []).append(value)
        elif key in out:
            raise ValidationError(
                f"--filter {key}= is given twice; only {' and '.join(REPEATABLE)} repeat",
                path="--filter",
            )
        else:
            out[key] = value
    if not out:
        raise ValidationError(
            f"a bulk action needs at least one --filter key=value ({', '.join(FILTER_KEYS)})",
            path="--filter",
        )
    if len(out.get("state") or []) == 1:
        out["state"] = out["state"][0]
    return out


def _interactive() -> bool:
    stdin = sys.stdin
    return stdin is not None and stdin.isatty()


def _ask(question: str) -> bool:
    """A yes/no question on stderr, answered on stdin (no answer: no)."""
    sys.stderr.write(question)
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _refused(args: argparse.Namespace, exc: ClientError) -> int:
    """A refused step (403, 409): the gateway's message on stderr (and its answer with
    --json), exit 1; any other error goes on to the CLI's handler (exit 2)."""
    if exc.detail.get("status") not in (403, 409):
        raise exc
    if getattr(args, "json", False) and exc.answer is not None:
        write_json(exc.answer)
    print(f"pipelinejobs: error: {printable(exc.message, 500)}", file=sys.stderr)
    return 1


def _executed(args: argparse.Namespace, message: dict[str, Any]) -> Mapping[str, Any]:
    """The jobs-manager's execution of ``message``, waited for (a still running one:
    as the gateway answered it, 202)."""
    answer = _call(args, "POST", MESSAGES, {"_abaco_synchronous": "true"}, message)
    view: Mapping[str, Any] = answer.get("result") or {}
    return view


def message_of(args: argparse.Namespace, operation: str, where: dict[str, Any]) -> dict[str, Any]:
    """The bulk message, without ``dry_run`` or ``confirm``."""
    message: dict[str, Any] = {"action": "bulk", "operation": operation, "filter": where}
    if getattr(args, "reason", None):
        message["reason"] = args.reason
    changes = list(getattr(args, "set", None) or []), list(getattr(args, "remove", None) or [])
    if operation == bulk.TAG:
        if not any(changes):
            raise ValidationError("bulk tag needs --set KEY=VALUE or --remove KEY", path="--set")
        if changes[0]:
            message["set"] = dict(changes[0])
        if changes[1]:
            message["remove"] = list(dict.fromkeys(changes[1]))
    elif any(changes):
        raise ValidationError("--set and --remove are for bulk tag", path="--set")
    return message


def act(args: argparse.Namespace, operation: str, where: dict[str, Any]) -> int:
    """The dry run, the confirmation, the real one and following it (the module's
    steps 1 to 4)."""
    message = message_of(args, operation, where)
    try:
        dry = _executed(args, {**message, "dry_run": True})
        if dry.get("status") != "COMPLETE":
            raise ClientError(
                f"the dry run is still {dry.get('status')}; try again (gateway.sync_timeout)"
            )
        preview: Mapping[str, Any] = dry.get("result") or {}
        if not args.json:
            show(dry_run_lines(preview))
        if not preview.get("allowed", True):
            print(f"pipelinejobs: refused: {printable(preview.get('refused'), 500)}",
                  file=sys.stderr)  # fmt: skip
            return 1
        if args.dry_run:
            return 0
        count = int(preview.get("count") or 0)
        if count == 0 and args.confirm is None:
            if not args.json:
                show([f"nothing to {operation}: no job the filter selects is in a state "
                      f"{operation} acts on"])  # fmt: skip
            return 0
        if args.confirm is None and not args.yes and not _confirmed(operation, count):
            return 1
        confirm = count if args.confirm is None else args.confirm
        started = _executed(args, {**message, "confirm": confirm})
    except ClientError as exc:
        return _refused(args, exc)
    return _started(args, started)


def _confirmed(operation: str, count: int) -> bool:
    """Asked on a terminal; off one, nothing is sent and it says how to go on."""
    if not _interactive():
        print(
            f"pipelinejobs: nothing was changed: not on a terminal to ask; to {operation} "
            f"these {count} jobs add --yes, or --confirm {count} (the count above)",
            file=sys.stderr,
        )
        return False
    noun = "job" if count == 1 else "jobs"
    if _ask(f"{operation.capitalize()} {count} {noun}? [y/N] "):
        return True
    print("pipelinejobs: nothing was changed", file=sys.stderr)
    return False


def _started(args: argparse.Namespace, view: Mapping[str, Any]) -> int:
    """What the real one answered, then (unless --no-follow) following it."""
    result: Mapping[str, Any] = view.get("result") or {}
    bulk_id = str(result.get("bulk") or view.get("executionId") or view.get("id"))
    if not args.json:
        if view.get("status") == "COMPLETE":
            show([f"bulk {printable(bulk_id)}: {printable(result.get('operation'))} of "
                  f"{text(result.get('total'))} jobs, {text(result.get('sent'))} sent, "
                  f"{text(result.get('skipped'))} skipped"])  # fmt: skip
        else:  # the gateway stopped waiting while it was still sending
            show([f"bulk {printable(bulk_id)}: {printable(view.get('status'))}, sending"])
    if args.no_follow:
        if not args.json:
            show([f"follow it: pipelinejobs bulk watch {printable(bulk_id)}"])
        return 0
    return follow(args, bulk_id)


def follow(args: argparse.Namespace, bulk_id: str) -> int:
    """Poll ``GET /bulk/<id>`` until its status is final (the bar on stderr), then
    the summary and every failed or refused job: exit 0 only if all were done."""
    client = _client(args)
    bar = Bar(sys.stderr, render=progress_line)
    interval = max(float(args.interval), 0.05)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    path = f"/bulk/{bulk_id}"
    try:
        while True:
            view = client.request("GET", path, {"limit": "1"})
            bar.update(view)
            if view.get("status") in FINAL:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(
                    f"bulk action {bulk_id} is still {view.get('status')} after "
                    f"{args.timeout:g} s (--timeout); pipelinejobs bulk watch {bulk_id} "
                    f"follows it again"
                )
            time.sleep(interval)
    finally:
        bar.close()
    return _summary(args, bulk_id)


def _summary(args: argparse.Namespace, bulk_id: str) -> int:
    """The final counts, then the failed and refused jobs a page at a time."""
    path = f"/bulk/{bulk_id}"
    params: dict[str, Any] = {"errors": "true", "limit": str(PAGE)}
    first = view = _call(args, "GET", path, params)["result"]
    failures = list(view.get("outcomes") or [])
    while view.get("next") is not None:
        view = _call(args, "GET", path, {**params, "cursor": view["next"]})["result"]
        failures.extend(view.get("outcomes") or [])
    counts = first.get("counts") or {}
    status = first.get("status")
    skipped = list(first.get("skipped") or [])
    if not args.json:
        operation, total = printable(first.get("operation")), text(first.get("total"))
        lines = [f"bulk {printable(bulk_id)} {printable(status)}: {operation} of {total} jobs: "
                 f"{_counted(counts)}"]  # fmt: skip
        rows = [[o.get("uuid"), o.get("outcome"), o.get("message") or ""]
                for o in [*failures, *skipped]]  # fmt: skip
        if rows:
            lines.extend(table(["UUID", "OUTCOME", "MESSAGE"], rows))
        unlisted = int(counts.get("skipped") or 0) - len(skipped)
        if unlisted > 0:
            lines.append(f"({unlisted} more skipped not listed: --json {path} shows them all)")
        show(lines)
    if status != "COMPLETE":
        why = first.get("error") or "see its log"
        print(
            f"pipelinejobs: error: bulk action {printable(bulk_id)} is {printable(status)}: "
            f"{printable(why, 500)}; its log: pipelinejobs logs jobs-manager {printable(bulk_id)}",
            file=sys.stderr,
        )
        return 1
    return 0 if not counts.get("errors") and not counts.get("skipped") else 1


def _counted(counts: Mapping[str, Any]) -> str:
    shown = [f"{text(counts.get(k, 0))} {k}" for k in ("done", "errors", "skipped")]
    shown += [f"{text(counts[k])} {k}" for k in ("running", "pending") if counts.get(k)]
    return ", ".join(shown)


def dry_run_lines(preview: Mapping[str, Any]) -> list[str]:
    """What a dry run says: the counts and states as ``key: value`` lines, then its
    sample as a table."""
    lines = fields([
        ("operation", text(preview.get("operation"))),
        ("count", text(preview.get("count"))),
        ("matched", text(preview.get("matched"))),
        ("states", ", ".join(str(s) for s in preview.get("states") or []) or "-"),
    ])  # fmt: skip
    sample = list(preview.get("sample") or [])
    if sample:
        rows = [[s.get("uuid"), s.get("state"), s.get("attempt"), s.get("updated"), _tags(s)]
                for s in sample]  # fmt: skip
        lines.extend(table(["UUID", "STATE", "ATTEMPT", "UPDATED", "TAGS"], rows))
        count = preview.get("count")
        if isinstance(count, int) and count > len(sample):
            lines.append(f"(the newest {len(sample)} of {count} shown)")
    return lines


def _tags(job: Mapping[str, Any]) -> str:
    tags = job.get("tags") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) if tags else "-"


def progress_line(view: Mapping[str, Any], width: int = 24) -> str:
    """A bulk action's progress in one line (its ``GET /bulk/<id>``)::

    [##########..............]  40%  4/10 jobs: 3 done, 1 errors, 0 skipped, 2 running  RUNNING
    """
    status = str(view.get("status"))
    total = int(view.get("total") or 0)
    counts = view.get("counts") or {}
    finished = sum(int(counts.get(k) or 0) for k in ("done", "errors", "skipped"))
    if total > 0:
        fraction = min(max(finished / total, 0.0), 1.0)
        filled = round(fraction * width)
        head = f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%  "
        head += f"{finished:,}/{total:,} jobs: "
    else:
        head = "selecting the jobs: " if status == "SENDING" else "no jobs: "
    return f"{head}{_counted(counts)}  {status}"


def cmd_bulk(args: argparse.Namespace) -> int:
    """Cancel, retry, retire or tag every job a filter selects: a dry run, a
    confirmation, then the bulk action, followed until done (bulk list, bulk watch ID)."""
    if args.operation == "list":
        return _list(args)
    if args.operation == "watch":
        if not args.id:
            raise ValidationError("bulk watch needs the bulk action's id", path="id")
        return follow(args, args.id)
    if args.id:
        raise ValidationError(
            f"bulk {args.operation} takes --filter key=value, not an id", path="id"
        )
    return act(args, args.operation, filter_of(args.filter))


def _list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.owner:
        params["owner"] = args.owner
    answer = _call(args, "GET", "/bulk", params)
    if args.json:
        return 0
    docs = answer["result"].get("bulk") or []
    if not docs:
        show(["no bulk actions"])
        return 0
    rows = ([d.get("id"), d.get("operation"), d.get("total"), d.get("created"),
             text(d.get("filter"))] for d in docs)  # fmt: skip
    show(table(["ID", "OPERATION", "JOBS", "CREATED", "FILTER"], rows))
    if answer["result"].get("next") is not None:
        show([_more(len(docs), None, args.limit)])
    return 0


def add_flow_options(p: argparse.ArgumentParser, scope: str = "") -> None:
    """The options of the flow (:func:`act`); ``scope`` prefixes their help."""
    how = p.add_mutually_exclusive_group()
    how.add_argument("--dry-run", action="store_true", help=f"{scope}only count and show a sample")
    how.add_argument("--yes", action="store_true", help=f"{scope}go on without asking")
    how.add_argument(
        "--confirm",
        type=int,
        metavar="N",
        help=f"{scope}go on without asking if the filter still selects N jobs (for scripts)",
    )
    p.add_argument("--reason", help=f"{scope}why (in each job's history)")
    p.add_argument(
        "--no-follow",
        action="store_true",
        help=f"{scope}do not wait for the jobs (pipelinejobs bulk watch ID does later)",
    )
    p.add_argument(
        "--interval", type=float, default=1.0, help=f"{scope}seconds between polls (default 1)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=0,
        help=f"{scope}stop following (exit 2) after this many seconds (default: never)",
    )


def add_command(add: Any) -> None:
    """Register ``bulk`` with the remote commands' ``add`` helper."""
    p = add("bulk", cmd_bulk, "cancel, retry, retire or tag every job a filter selects")
    p.add_argument("operation", choices=[*bulk.OPERATIONS, "list", "watch"])
    p.add_argument("id", nargs="?", help="watch: the bulk action's id")
    p.add_argument(
        "--filter",
        type=filter_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"which jobs (repeatable; state and linkage more than once): "
        f"{', '.join(FILTER_KEYS)}; e.g. state=FAILED, run=126…, tag=k:v, owner=me",
    )
    p.add_argument(
        "--set",
        type=tag_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="tag: set this tag (repeatable)",
    )
    p.add_argument("--remove", action="append", default=[], metavar="KEY", help="tag: remove it")
    add_flow_options(p)
    p.add_argument("--owner", help="list: only this key's bulk actions (me: your own)")
    p.add_argument("--limit", type=int, default=50, help="list: how many")
