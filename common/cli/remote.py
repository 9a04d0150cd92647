"""The CLI commands that talk to a running gateway (the client itself is
:mod:`pipelinejobs.client.http`; ``Client`` and ``ClientError`` are re-exported here).

Like ``abaco run``: ``pipelinejobs run -m '<json>' -q key=value ACTOR``. The URL and
the bearer key come from ``--url``/``--key`` or ``PIPELINEJOBS_URL``/``PIPELINEJOBS_KEY``.
Each command prints its result on stdout as a person reads it — ``key: value`` lines
or a short table (:mod:`pipelinejobs.cli.output`) —, and with ``--json`` the gateway's
answer as it came, for scripts. stderr stays empty unless something is wrong (one
line, ``pipelinejobs: error: ...``, and what the gateway's answer adds: a schema's
every complaint, the execution to read the log of) or ``-v`` asks for each request
and its answer (secret parameters masked). Uses only the standard library, so the
CLI needs nothing beyond the package.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from pipelinejobs.access import boundary
from pipelinejobs.cli.output import fields, flatten, printable, show, table, text, write_json
from pipelinejobs.client.http import Client, ClientError
from pipelinejobs.domain.lifecycle import State
from pipelinejobs.errors import PipelineJobsError, ValidationError

__all__ = ["Client", "ClientError", "add_commands", "explain"]


def _client(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("PIPELINEJOBS_URL") or "http://127.0.0.1:8000"
    trace = _trace if getattr(args, "verbose", False) else None
    return Client(url, args.key or os.environ.get("PIPELINEJOBS_KEY"), trace=trace)


def _trace(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _call(
    args: argparse.Namespace, method: str, path: str, params: Any = None, body: Any = None
) -> Any:
    """The gateway's answer; with ``--json`` it is printed, as it came, on stdout."""
    answer = _client(args).call(method, path, params, body)
    if getattr(args, "json", False):
        write_json(answer)
    return answer


def explain(exc: PipelineJobsError) -> list[str]:
    """What an error's answer adds to its one line, for stderr: each complaint of a
    schema (the message names only the first), and where an execution's log is."""
    result = exc.detail.get("result") if isinstance(exc, ClientError) else None
    if not isinstance(result, Mapping):
        return []
    lines: list[str] = []
    errors = result.get("errors")
    if isinstance(errors, list) and len(errors) > 1:
        lines.extend(printable(e, 300) for e in errors)
    execution, actor = result.get("executionId") or result.get("id"), result.get("actorId")
    if execution and actor and result.get("status") == "ERROR":
        lines.append(
            f"execution {printable(execution)} of {printable(actor)} ended ERROR; "
            f"its log: pipelinejobs logs {printable(actor)} {printable(execution)}"
        )
    return lines


def _answers_json(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """With ``--json``, an error's answer is printed on stdout too (then the error)."""

    @functools.wraps(func)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ClientError as exc:
            if getattr(args, "json", False) and exc.answer is not None:
                write_json(exc.answer)
            raise

    return wrapped


def key_values(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationError(f"-q takes key=value, not {pair!r}", path="-q")
        out[key] = value
    return out


def cmd_run(args: argparse.Namespace) -> int:
    """Send a message to an actor (like abaco run); with --sync, print its result."""
    body = boundary.decode(args.message, where="-m") if args.message else None
    params = key_values(args.query)
    if args.sync:
        params["_abaco_synchronous"] = "true"
    answer = _call(args, "POST", f"/actors/v2/{args.actor}/messages", params, body)
    view = answer.get("result") or {}
    execution = view.get("executionId") or view.get("id")
    if not args.sync:  # only accepted, so far
        if not args.json:
            show([f"execution {printable(execution)}  SUBMITTED"])
        return 0
    status = view.get("status")
    if not args.json:
        show(execution_lines(view))
    if status != "COMPLETE":  # the gateway stopped waiting (gateway.sync_timeout)
        print(
            f"pipelinejobs: {printable(answer.get('message') or status, 200)}; follow it: "
            f"pipelinejobs executions watch {printable(args.actor)} {printable(execution)}",
            file=sys.stderr,
        )
        return 1
    return 0


def execution_lines(view: Mapping[str, Any]) -> list[str]:
    """An execution and its actor's result: ``execution <id>  <status>``, then the
    result's fields (a new job's uuid and token, a pipeline's uuid...)."""
    lines = [f"execution {printable(view.get('executionId') or view.get('id'))}  "
             f"{printable(view.get('status'))}"]  # fmt: skip
    result = view.get("result")
    if isinstance(result, Mapping):
        lines.extend(fields(flatten(result)))
    elif result is not None:
        lines.extend(fields([("result", text(result))]))
    return lines


def cmd_executions(args: argparse.Namespace) -> int:
    """List an actor's executions (or, executions watch ACTOR ID, follow one)."""
    if args.actor == "watch" or args.more:
        from pipelinejobs.cli import watch

        if args.actor != "watch" or len(args.more) != 2:
            raise ValidationError(
                "executions takes ACTOR, or watch ACTOR EXECUTION", path="executions"
            )
        if args.json:
            raise ValidationError("--json is for listing: watch prints as it goes", path="--json")
        return watch.cmd_execution_watch(args, args.more[0], args.more[1])
    answer = _call(args, "GET", f"/actors/v2/{args.actor}/executions", {"limit": args.limit})
    if args.json:
        return 0
    result = answer["result"]
    executions = result.get("executions") or []
    if not executions:
        show([f"no executions of {printable(args.actor)}"])
        return 0
    show(
        table(
            ["ID", "STATUS", "CREATED", "FINISHED"],
            (
                [e["id"], e["status"], e.get("createTime") or "-", e.get("finishTime") or "-"]
                for e in executions
            ),
        )
    )
    total = result.get("totalExecutions")
    if result.get("next") is not None or (isinstance(total, int) and total > len(executions)):
        show([_more(len(executions), total, args.limit)])
    return 0


def _more(shown: int, total: Any, limit: int) -> str:
    of = f" of {total}" if isinstance(total, int) else ""
    return f"({shown}{of} shown; --limit, now {limit}, shows more)"


def cmd_logs(args: argparse.Namespace) -> int:
    """Print an execution's log lines."""
    answer = _call(args, "GET", f"/actors/v2/{args.actor}/executions/{args.execution}/logs")
    if not args.json:
        logs = (answer.get("result") or {}).get("logs") or ""
        show([printable(line, 10_000) for line in logs.splitlines()] or ["(no log lines)"])
    return 0


def _uses(value: Any) -> str:
    return "unlimited" if value == -1 or value is None else text(value)


def cmd_nonces(args: argparse.Namespace) -> int:
    """Create, list or delete nonces of an actor."""
    base = f"/actors/v2/{args.actor}/nonces"
    if args.action == "create":
        body: dict[str, Any] = {"level": args.level, "maxUses": args.max_uses}
        if args.description:
            body["description"] = args.description
        if args.expires_in:
            body["expiresIn"] = args.expires_in
        nonce = _call(args, "POST", base, body=body)["result"]
        if not args.json:
            show(fields(_nonce_fields(nonce)))
    elif args.action == "list":
        nonces = _call(args, "GET", base)["result"] or []
        if args.json:
            return 0
        if not nonces:
            show([f"no nonces of {printable(args.actor)}"])
            return 0
        show(
            table(
                ["ID", "LEVEL", "USES LEFT", "OWNER", "EXPIRES", "DESCRIPTION"],
                (
                    [
                        n["id"],
                        n.get("level") or "-",
                        _uses(n.get("remainingUses")),
                        n.get("owner") or "-",
                        n.get("expires") or "never",
                        n.get("description") or "",
                    ]
                    for n in nonces
                ),
            )
        )
    else:
        if not args.nonce:
            raise ValidationError("nonces delete needs the nonce id", path="nonce")
        _call(args, "DELETE", f"{base}/{args.nonce}")
        if not args.json:
            show([f"deleted nonce {printable(args.nonce)}"])
    return 0


def _nonce_fields(nonce: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        ("id", text(nonce.get("id"))),
        ("actor", text(nonce.get("actorId"))),
        ("level", text(nonce.get("level"))),
        ("uses", _uses(nonce.get("maxUses"))),
        ("expires", text(nonce.get("expires") or "never")),
        ("description", text(nonce.get("description") or "")),
    ]


def cmd_job_log(args: argparse.Namespace) -> int:
    """Print a local, docker or Slurm job's output; with --follow, until the job has ended."""
    client = _client(args)
    path, offset, ended = f"/jobs/{args.uuid}/log", 0, False
    while True:
        try:
            data, headers = client.text(path, {"offset": offset})
        except ClientError as exc:  # no log yet: a job that has not started
            if not args.follow or exc.detail.get("status") != 404:
                raise
            data, headers = b"", {}
        if data:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            offset = int(headers.get("X-Log-Next-Offset") or offset + len(data))
            continue
        if not args.follow or ended:
            return 0
        # One more read after the job ended: what it wrote last is read too.
        ended = client.request("GET", f"/jobs/{args.uuid}")["state"] not in LIVE_STATES
        if not ended:
            time.sleep(args.interval)


#: States in which a job's compute may still write to its log.
LIVE_STATES = ("CREATED", "RUNNING")


def completed(
    args: argparse.Namespace, actor: str, message: dict[str, Any]
) -> dict[str, Any] | None:
    """Send ``message`` to ``actor`` and wait for its execution: the actor's result, or
    None once a refusal in the worker (or an execution still running when the gateway
    stopped waiting) has been said on stderr with where its log is."""
    answer = _call(
        args, "POST", f"/actors/v2/{actor}/messages", {"_abaco_synchronous": "true"}, message
    )
    view = answer.get("result") or {}
    if view.get("status") != "COMPLETE":  # refused in the worker, or still running
        why = (view.get("error") or {}).get("message") or view.get("status")
        execution = view.get("executionId") or view.get("id")
        print(
            f"pipelinejobs: error: {printable(why, 300)}; "
            f"see: pipelinejobs logs {actor} {printable(execution)}",
            file=sys.stderr,
        )
        return None
    result: dict[str, Any] = view.get("result") or {}
    return result


def cmd_job_retry(args: argparse.Namespace) -> int:
    """Retry a FAILED job as its next attempt (a retry message to the launcher-proxy)."""
    if not args.uuid:
        raise ValidationError("jobs retry needs a uuid", path="uuid")
    message: dict[str, Any] = {"action": "retry", "uuid": args.uuid}
    if args.token:
        message["token"] = args.token
    if args.reason:
        message["reason"] = args.reason
    result = completed(args, "launcher-proxy", message)
    if result is None:
        return 1
    if args.json:
        return 0
    if result.get("retried"):
        attempt = printable(result.get("attempt"))
        show([f"job {printable(args.uuid)} is retried as attempt {attempt}",
              f"archive_path: {printable(result.get('archive_path'), 300)}"])  # fmt: skip
    else:
        show([f"job {printable(args.uuid)}: {printable(result.get('message'), 300)}"])
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Fail a job saying why; the compute of a local, docker or Slurm job is stopped."""
    event = {"uuid": args.uuid, "name": "fail", "token": args.token}
    # ``cancelled``: a person's decision, which no retry policy retries.
    event["data"] = {"reason": args.reason, "cancelled": True}
    answer = _call(
        args, "POST", "/actors/v2/jobs-manager/messages", {"_abaco_synchronous": "true"}, event
    )
    if args.json:
        return 0
    result = (answer.get("result") or {}).get("result") or {}
    stopping = result.get("stopping") or []
    show([f"job {printable(args.uuid)} is {printable(result.get('state'))}; " + (
        f"its compute is being stopped (launch {printable(', '.join(stopping), 200)})"
        if stopping else "no compute of it runs here to stop"
    )])  # fmt: skip
    return 0


def job_states(value: str) -> list[str]:
    """``--state``'s value: states in any case, comma-separated (``finished,failed``)."""
    given = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in given if name.upper() not in State.__members__]
    if unknown or not given:
        raise argparse.ArgumentTypeError(
            f"unknown state {', '.join(map(repr, unknown or [value]))}; the states are "
            f"{', '.join(State.__members__)} (any case, comma-separated)"
        )
    return [name.upper() for name in given]


def tag_pair(value: str) -> tuple[str, str]:
    """``--set``'s value: ``key=value``."""
    key, eq, text = value.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"a tag to set is key=value, not {value!r}")
    return key, text


def add_tag_options(p: argparse.ArgumentParser) -> None:
    """``jobs list --tag --owner --run`` and ``jobs tag UUID --set k=v --remove k``
    (issue 15)."""
    p.add_argument("--tag", metavar="KEY:VALUE", help="list: only jobs with this tag")
    p.add_argument(
        "--owner", help="list: only jobs created by this key (its listed id; me: your own)"
    )
    p.add_argument("--run", metavar="RUN_UUID", help="list: only jobs launched in this run")
    p.add_argument(
        "--set",
        type=tag_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="tag: set this tag (repeatable)",
    )
    p.add_argument(
        "--remove", action="append", default=[], metavar="KEY", help="tag: remove this tag"
    )


def cmd_job_tag(args: argparse.Namespace) -> int:
    """Set and remove a job's tags (a tag message to the jobs-manager)."""
    if not args.uuid:
        raise ValidationError("jobs tag needs a uuid", path="uuid")
    if not args.set and not args.remove:
        raise ValidationError("jobs tag needs --set KEY=VALUE or --remove KEY", path="--set")
    message: dict[str, Any] = {"action": "tag", "uuid": args.uuid}
    if args.set:
        message["set"] = dict(args.set)
    if args.remove:
        message["remove"] = list(dict.fromkeys(args.remove))
    if args.token:
        message["token"] = args.token
    answer = _call(
        args, "POST", "/actors/v2/jobs-manager/messages", {"_abaco_synchronous": "true"}, message
    )
    if args.json:
        return 0
    result = (answer.get("result") or {}).get("result") or {}
    tags = result.get("tags") or {}
    listed = ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) or "none"
    show([f"job {printable(args.uuid)} tags: {printable(listed, 500)}"])
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    """jobs|pipelines list|show, jobs watch, jobs retry, jobs tag."""
    if args.action == "retry":
        return cmd_job_retry(args)
    if args.action == "tag":
        return cmd_job_tag(args)
    if args.action == "watch":
        from pipelinejobs.cli import watch

        if args.json:
            raise ValidationError(
                "--json is for list and show: watch prints as it goes", path="--json"
            )
        return watch.cmd_job_watch(args)
    if args.action == "show":
        if not args.uuid:
            raise ValidationError(f"{args.what} show needs a uuid", path="uuid")
        answer = _call(args, "GET", f"/{args.what}/{args.uuid}")
        if not args.json:
            if args.what == "jobs":
                show(_job_lines(_client(args), answer["result"]))
            else:
                show(fields(_pipeline_fields(answer["result"])))
        return 0
    params: dict[str, Any] = {"limit": args.limit}
    if getattr(args, "state", None):
        params["state"] = args.state
    for name in ("tag", "owner", "run"):
        if getattr(args, name, None):
            params[name] = getattr(args, name)
    answer = _call(args, "GET", f"/{args.what}", params)
    if args.json:
        return 0
    result = answer["result"]
    docs = result.get(args.what) or []
    if not docs:
        states = " or ".join(params.get("state") or [])
        show([f"no {args.what}" + (f" in state {states}" if states else "")])
        return 0
    if args.what == "jobs":
        show(
            table(
                ["UUID", "STATE", "UPDATED"],
                ([d["uuid"], d.get("state"), d.get("updated")] for d in docs),
            )
        )
    else:
        show(
            table(
                ["UUID", "STATUS", "NAME"],
                ([d["uuid"], d.get("status"), d.get("name")] for d in docs),
            )
        )
    if result.get("next") is not None:
        show([_more(len(docs), None, args.limit)])
    return 0


#: A job's fields ``jobs show`` prints, in this order (the rest: --json).
JOB_FIELDS = (
    "uuid", "state", "last_event", "pipeline_uuid", "archive_system", "archive_path",
    "session", "child_of", "derived_from", "acted_on", "owner", "tags", "created", "updated",
)  # fmt: skip


def _job_lines(client: Client, job: Mapping[str, Any]) -> list[str]:
    """A job's main fields, then its whole history (read a page at a time)."""
    shown = {k: job[k] for k in JOB_FIELDS if job.get(k) not in (None, [], "")}
    launch = job.get("launch")
    if isinstance(launch, Mapping) and launch.get("backend"):
        shown["backend"] = launch["backend"]
    history = list(job.get("history") or [])
    while len(history) < int(job.get("event_count") or 0):
        page = client.request(
            "GET", f"/jobs/{job['uuid']}/history", {"after": str(len(history)), "limit": "1000"}
        )
        if not page.get("history"):
            break
        history.extend(page["history"])
    lines = fields(flatten(shown))
    lines.append(f"history ({len(history)} events):")
    rows = [[e.get("date"), e.get("name"), _detail(e.get("data"))] for e in history]
    lines.extend("  " + line for line in table(["DATE", "EVENT", "DETAIL"], rows))
    return lines


def _detail(data: Any) -> str:
    """What says most about an event: a fail's reason, an update's status..."""
    if isinstance(data, Mapping):
        for key in ("reason", "status", "level", "message"):
            if isinstance(data.get(key), str | int | float):
                return printable(data[key])
    return ""


def _pipeline_fields(pipeline: Mapping[str, Any]) -> list[tuple[str, str]]:
    keys = ("uuid", "name", "status", "description", "component_ids", "processing_levels",
            "accepts", "produces", "created", "updated")  # fmt: skip
    return flatten({k: pipeline[k] for k in keys if pipeline.get(k) not in (None, "")})


DEMO_APP = "pipelinejobs-demo-0.1.0"
#: What the demo job runs: a few files, in the archive directory it is started in, under
#: the directory its launch names (the SAMPLE variable, passed as its one argument).
DEMO_SCRIPT = """
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
out.mkdir(exist_ok=True)
(out / "counts.csv").write_text("gene,count\\nabc1,12\\nxyz9,7\\n")
(out / "summary.json").write_text(json.dumps({"genes": 2, "reads": 19}))
pathlib.Path("scratch.tmp").write_text("not indexed: no filter matches it")
print("demo job wrote 3 files")
"""


#: The demo's pipeline: what its jobs run is declared here, by an admin, once. A launch
#: only sets SAMPLE, which reaches the script as one argv element (no shell).
DEMO_COMPONENT = {
    "id": DEMO_APP,
    "command": ["python3", "-c", DEMO_SCRIPT, "${SAMPLE}"],
    "variables": {"SAMPLE": {"pattern": "^[A-Za-z0-9_.-]+$", "default": "sample.demo.1"}},
}


def cmd_demo(args: argparse.Namespace) -> int:
    """Register a small pipeline (an admin key's right: it runs a local command), run
    a job of it that writes files, watch it walk."""
    from pipelinejobs.domain.lifecycle import next_state

    client = _client(args)
    pipeline = client.request(
        "POST",
        "/actors/v2/pipelines-manager/messages",
        {"_abaco_synchronous": "true"},
        {
            "name": "PipelineJobs demo",
            "description": "writes 3 files",
            "components": [DEMO_COMPONENT],
        },
    )["result"]
    print(f"pipeline {pipeline['uuid']} ({'registered' if pipeline['created'] else 'known'})")
    launch = client.request(
        "POST",
        "/actors/v2/launcher-proxy/messages",
        {"_abaco_synchronous": "true"},
        {
            "pipeline_uuid": pipeline["uuid"],
            "parameters": {"sample_id": "sample.demo.1"},
            "job_definition": {
                "appId": DEMO_APP,
                "maxRunTime": "00:05:00",
                "parameters": {"SAMPLE": "sample.demo.1"},
            },
            "data": {"demo_run": time.time()},
            "index_patterns": ["\\.csv$", "\\.json$"],
            "processing_level": "2",
        },
    )["result"]
    uuid = launch["uuid"]
    print(f"job {uuid} launched on {launch['launch']['backend']}, archive {launch['archive_path']}")
    shown, state, deadline = 0, None, time.monotonic() + args.timeout
    last: dict[str, Any] = {}
    while True:
        job = client.request("GET", f"/jobs/{uuid}")
        # The entries not shown yet, a page at a time (the job inlines only the first).
        while shown < job.get("event_count", shown):
            page = client.request("GET", f"/jobs/{uuid}/history", {"after": str(shown)})
            for entry in page["history"]:
                state = next_state(state, entry["name"]).value if state else "CREATED"
                print(f"  {entry['date']}  {entry['name']:<9} -> {state}")
                last = entry
            shown += len(page["history"])
            if not page["history"]:
                break
        if job["last_event"] == "indexed" or job["state"] == "FAILED":
            break
        if time.monotonic() > deadline:
            raise ClientError(
                f"job {uuid} did not finish in {args.timeout:.0f} s (state "
                f"{job['state']}); see pipelinejobs jobs show {uuid}"
            )
        time.sleep(0.2)
    if job["state"] == "FAILED":
        raise ClientError(f"job {uuid} failed: {last.get('data')}")
    for f in client.request("GET", f"/jobs/{uuid}/files")["files"]:
        print(f"  file {f['relative_path']}  level {f['level']}  {f['size']} bytes")
    print(uuid)
    return 0


def add_commands(sub: Any) -> None:
    """Register the HTTP client commands on the CLI's subparsers."""

    def add(
        name: str, func: Any, help_text: str, *, answers: bool = True
    ) -> argparse.ArgumentParser:
        """A command of the gateway; ``answers``: it prints an answer --json can give."""
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--url", help="gateway URL (default $PIPELINEJOBS_URL)")
        p.add_argument("--key", help="bearer key (default $PIPELINEJOBS_KEY)")
        p.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help="each request and its answer's status on stderr (secrets masked)",
        )
        if answers:
            p.add_argument(
                "--json",
                action="store_true",
                help="print the gateway's JSON answer as it came (for scripts), errors too",
            )
            func = _answers_json(func)
        p.set_defaults(func=func, http=True)
        return p

    run = add("run", cmd_run, "send a message to an actor (like abaco run)")
    run.add_argument("actor")
    run.add_argument("-m", "--message", help="the JSON message")
    run.add_argument(
        "-q", "--query", action="append", metavar="KEY=VALUE", help="a URL parameter (repeatable)"
    )
    run.add_argument(
        "--sync",
        action="store_true",
        help="wait for the execution and print its result (exit 1 if the gateway stops "
        "waiting first: gateway.sync_timeout)",
    )
    from pipelinejobs.cli import watch

    ex = add(
        "executions",
        cmd_executions,
        "list an actor's executions; `executions watch ACTOR ID` follows one (status, progress)",
    )
    ex.add_argument("actor", help="the actor, or `watch` followed by ACTOR EXECUTION")
    ex.add_argument("more", nargs="*", help=argparse.SUPPRESS)
    ex.add_argument("--limit", type=int, default=50)
    watch.add_watch_options(ex)
    logs = add("logs", cmd_logs, "print an execution's logs")
    logs.add_argument("actor")
    logs.add_argument("execution")
    nonces = add("nonces", cmd_nonces, "create, list or delete an actor's nonces")
    nonces.add_argument("action", choices=["create", "list", "delete"])
    nonces.add_argument("actor")
    nonces.add_argument("nonce", nargs="?")
    nonces.add_argument("--level", default="EXECUTE", choices=["READ", "EXECUTE", "UPDATE"])
    nonces.add_argument("--max-uses", type=int, default=-1)
    nonces.add_argument("--description", default="")
    nonces.add_argument("--expires-in", type=int, default=None)
    job_log = add(
        "job-log", cmd_job_log, "print a local, docker or Slurm job's output", answers=False
    )
    job_log.add_argument("uuid")
    job_log.add_argument("-f", "--follow", action="store_true", help="until the job ends")
    job_log.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    cancel = add("cancel", cmd_cancel, "fail a job saying why; its local/docker compute stops")
    cancel.add_argument("uuid")
    cancel.add_argument("--token", required=True, help="the job's update token (or an admin token)")
    cancel.add_argument("--reason", default="cancelled from the command line")
    from pipelinejobs.cli import lineage

    lineage.add_command(add)
    from pipelinejobs.cli import runs

    runs.add_command(add)
    from pipelinejobs.cli import bulk

    bulk.add_command(add)
    demo = add(
        "demo", cmd_demo, "run a small local job on the server and watch it walk", answers=False
    )
    demo.add_argument("--timeout", type=float, default=60.0)
    for what in ("jobs", "pipelines"):
        if what == "jobs":
            p = add(
                what,
                cmd_read,
                "list or show jobs; `jobs watch UUID` follows one live; `jobs retry UUID`",
            )
            p.add_argument("action", choices=["list", "show", "watch", "retry", "tag"])
            p.add_argument("--token", help="retry: the job's update token (or an admin token)")
            p.add_argument("--reason", help="retry: why (kept in the job's history)")
        else:
            p = add(what, cmd_read, f"list or show {what}")
            p.add_argument("action", choices=["list", "show"])
        p.add_argument("uuid", nargs="?")
        p.add_argument("--limit", type=int, default=50)
        if what == "jobs":
            p.add_argument(
                "--state",
                type=job_states,
                action="extend",
                metavar="STATE[,STATE]",
                help="list: only jobs in these states (any case: finished, FINISHED)",
            )
            p.add_argument(
                "--until",
                help="watch: stop when the job is in one of these states (comma-separated); "
                "default: when it is done (README: jobs watch)",
            )
            p.add_argument(
                "--tail",
                type=int,
                default=None,
                help="watch: show only the last N events of the history so far",
            )
            add_tag_options(p)
            watch.add_watch_options(p)
        p.set_defaults(what=what)
