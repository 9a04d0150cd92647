"""A small HTTP client for the gateway, and the CLI commands that use it.

Like ``abaco run``: ``pipelinejobs run -m '<json>' -q key=value ACTOR``. The URL and
the bearer key come from ``--url``/``--key`` or ``PIPELINEJOBS_URL``/``PIPELINEJOBS_KEY``.
Each command prints the gateway's JSON answer to stderr and the one thing a script
wants (an execution id, a nonce id, a log) alone on the last line of stdout. Uses
only the standard library, so the CLI needs nothing beyond the package.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from pipelinejobs.access import boundary
from pipelinejobs.errors import PipelineJobsError, ValidationError


class ClientError(PipelineJobsError):
    """The gateway answered with an error (its status and message are kept)."""


class Client:
    """Calls the gateway; returns the envelope's ``result``.

    Every message POST carries a fresh ``Idempotency-Key`` (one per logical request,
    kept across its retries), so a request whose answer was lost can be sent again
    without applying it twice. Requests that are safe to repeat — reads, deletes and
    those keyed POSTs — are retried on connection errors and 5xx answers, with
    exponential back-off (a ``Retry-After`` the gateway sends is honoured); any other
    request is retried only when it never reached the server (connection refused).
    """

    def __init__(
        self,
        url: str,
        key: str | None = None,
        timeout: float = 60.0,
        *,
        retries: int = 4,
        backoff: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        #: Do not echo every answer to stderr (commands that print their own summary).
        self.quiet = False

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        raw, _ = self._send(method, path, params, body)
        answer = json.loads(raw or b"null")
        if not self.quiet:
            print(json.dumps(answer, indent=2), file=sys.stderr)
        return (answer or {}).get("result")

    def text(self, path: str, params: dict[str, Any] | None = None) -> tuple[bytes, Any]:
        """A plain-text GET (a job's log): the body and the response's headers."""
        return self._send("GET", path, params, None)

    def _send(
        self, method: str, path: str, params: dict[str, Any] | None, body: Any
    ) -> tuple[bytes, Any]:
        query = urllib.parse.urlencode(params or {}, doseq=True)
        target = f"{self.url}{path}" + (f"?{query}" if query else "")
        data = json.dumps(body, allow_nan=False).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        if method == "POST" and path.endswith("/messages"):
            headers["Idempotency-Key"] = uuid.uuid4().hex
        safe = method in ("GET", "HEAD", "DELETE") or "Idempotency-Key" in headers
        for attempt in itertools.count(1):
            req = urllib.request.Request(target, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                    return resp.read(), resp.headers
            except urllib.error.HTTPError as exc:
                try:
                    answer = json.loads(exc.read() or b"null")
                    message = answer.get("message") or exc.reason
                except (ValueError, AttributeError):
                    answer, message = None, exc.reason
                error = ClientError(
                    f"{exc.code}: {message}", status=exc.code, result=(answer or {}).get("result")
                )
                if not (safe and exc.code >= 500 and attempt <= self.retries):
                    raise error from exc
                self._pause(attempt, exc.headers.get("Retry-After"))
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                unsent = isinstance(reason, ConnectionRefusedError)
                if not ((safe or unsent) and attempt <= self.retries):
                    raise ClientError(f"cannot reach {self.url}: {exc}") from exc
                self._pause(attempt, None)
        raise AssertionError("unreachable")  # pragma: no cover

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * 2 ** (attempt - 1)
        try:
            delay = max(delay, min(float(retry_after or 0), 30.0))
        except ValueError:
            pass
        time.sleep(delay)


def _client(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("PIPELINEJOBS_URL") or "http://127.0.0.1:8000"
    return Client(url, args.key or os.environ.get("PIPELINEJOBS_KEY"))


def key_values(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationError(f"-q takes key=value, not {pair!r}", path="-q")
        out[key] = value
    return out


def cmd_run(args: argparse.Namespace) -> int:
    """Send a message to an actor (like `abaco run`)."""
    body = boundary.decode(args.message, where="-m") if args.message else None
    params = key_values(args.query)
    if args.sync:
        params["_abaco_synchronous"] = "true"
    result = _client(args).request("POST", f"/actors/v2/{args.actor}/messages", params, body)
    print(result.get("executionId") or result.get("id"))
    return 0


def cmd_executions(args: argparse.Namespace) -> int:
    """List an actor's executions."""
    result = _client(args).request(
        "GET", f"/actors/v2/{args.actor}/executions", {"limit": args.limit}
    )
    for e in result["executions"]:
        print(f"{e['id']}  {e['status']:<9} {e['createTime']}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """Print an execution's log lines."""
    result = _client(args).request(
        "GET", f"/actors/v2/{args.actor}/executions/{args.execution}/logs"
    )
    print(result["logs"])
    return 0


def cmd_nonces(args: argparse.Namespace) -> int:
    """Create, list or delete nonces of an actor."""
    client, base = _client(args), f"/actors/v2/{args.actor}/nonces"
    if args.action == "create":
        body: dict[str, Any] = {"level": args.level, "maxUses": args.max_uses}
        if args.description:
            body["description"] = args.description
        if args.expires_in:
            body["expiresIn"] = args.expires_in
        print(client.request("POST", base, body=body)["id"])
    elif args.action == "list":
        for n in client.request("GET", base):
            print(f"{n['id']}  {n['level']:<8} uses left {n['remainingUses']}")
    else:
        if not args.nonce:
            raise ValidationError("nonces delete needs the nonce id", path="nonce")
        client.request("DELETE", f"{base}/{args.nonce}")
        print(args.nonce)
    return 0


def cmd_job_log(args: argparse.Namespace) -> int:
    """Print a local or docker job's output; with --follow, until the job has ended."""
    client = _client(args)
    client.quiet = True
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


def cmd_cancel(args: argparse.Namespace) -> int:
    """Fail a job saying why; the compute of a local or docker job is stopped."""
    client = _client(args)
    client.quiet = True
    event = {"uuid": args.uuid, "name": "fail", "token": args.token}
    event["data"] = {"reason": args.reason}
    answer = client.request(
        "POST", "/actors/v2/jobs-manager/messages", {"_abaco_synchronous": "true"}, event
    )
    result = answer.get("result") or {}
    stopping = result.get("stopping") or []
    print(f"job {args.uuid} is {result.get('state')}; " + (
        f"its compute is being stopped (launch {', '.join(stopping)})" if stopping
        else "no compute of it runs here to stop"
    ))  # fmt: skip
    print(args.uuid)
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    """jobs|pipelines list|show."""
    client = _client(args)
    if args.action == "show":
        if not args.uuid:
            raise ValidationError(f"{args.what} show needs a uuid", path="uuid")
        print(json.dumps(client.request("GET", f"/{args.what}/{args.uuid}"), indent=2))
        return 0
    params: dict[str, Any] = {"limit": args.limit}
    if getattr(args, "state", None):
        params["state"] = args.state
    result = client.request("GET", f"/{args.what}", params)
    for doc in result[args.what]:
        print(
            f"{doc['uuid']}  {doc.get('state') or doc.get('status')}  "
            f"{doc.get('name') or doc.get('pipeline_uuid')}"
        )
    return 0


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
    client.quiet = True
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

    def add(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--url", help="gateway URL (default $PIPELINEJOBS_URL)")
        p.add_argument("--key", help="bearer key (default $PIPELINEJOBS_KEY)")
        p.set_defaults(func=func, http=True)
        return p

    run = add("run", cmd_run, "send a message to an actor (like abaco run)")
    run.add_argument("actor")
    run.add_argument("-m", "--message", help="the JSON message")
    run.add_argument(
        "-q", "--query", action="append", metavar="KEY=VALUE", help="a URL parameter (repeatable)"
    )
    run.add_argument("--sync", action="store_true", help="wait for the execution's result")
    ex = add("executions", cmd_executions, "list an actor's executions")
    ex.add_argument("actor")
    ex.add_argument("--limit", type=int, default=50)
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
    job_log = add("job-log", cmd_job_log, "print a local or docker job's output")
    job_log.add_argument("uuid")
    job_log.add_argument("-f", "--follow", action="store_true", help="until the job ends")
    job_log.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    cancel = add("cancel", cmd_cancel, "fail a job saying why; its local/docker compute stops")
    cancel.add_argument("uuid")
    cancel.add_argument("--token", required=True, help="the job's update token (or an admin token)")
    cancel.add_argument("--reason", default="cancelled from the command line")
    demo = add("demo", cmd_demo, "run a small local job on the server and watch it walk")
    demo.add_argument("--timeout", type=float, default=60.0)
    for what in ("jobs", "pipelines"):
        p = add(what, cmd_read, f"list or show {what}")
        p.add_argument("action", choices=["list", "show"])
        p.add_argument("uuid", nargs="?")
        p.add_argument("--limit", type=int, default=50)
        if what == "jobs":
            p.add_argument("--state")
        p.set_defaults(what=what)
