"""The ``pipelinejobs`` command.

Two kinds of subcommands:

* **local** ones act on this machine's configuration, store and broker and need no
  server: ``serve`` (the embedded system), ``gateway`` and ``worker`` (production
  processes), ``init``, ``admin-token``, ``keys``, ``config``, ``send``,
  ``quarantine`` (records set aside as corrupt);
* **HTTP** ones talk to a gateway (:mod:`pipelinejobs.cli.remote`): ``run``, ``executions``,
  ``logs``, ``nonces``, ``jobs``, ``pipelines``, ``lineage``, ``runs``, ``bulk``.

Each prints its result on stdout, as a person reads it (the HTTP ones: ``--json`` for
the gateway's answer as it came, for scripts; the local ``keys create`` and
``admin-token``: the secret alone on the last line); errors go to stderr, one line with a
non-zero exit code and no traceback. Help texts are made from these docstrings with
their reST markup taken out (:func:`pipelinejobs.cli.output.plain`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pipelinejobs import __version__
from pipelinejobs.access import boundary
from pipelinejobs.access.keys import ROLES, Keys
from pipelinejobs.access.server_secrets import resolve_secrets, token_authority
from pipelinejobs.adapters.store import COLLECTIONS, open_store
from pipelinejobs.adapters.store.base import QUARANTINE
from pipelinejobs.cli import ports, remote
from pipelinejobs.cli.output import plain, printable, show, write_json
from pipelinejobs.config import LOG_FORMATS, LOG_LEVELS, Config, env_name, load_config
from pipelinejobs.errors import ConfigError, PipelineJobsError, ValidationError
from pipelinejobs.observability import exporter, logs, multiprocess
from pipelinejobs.runtime.system import System, parse_actors

Command = Callable[[argparse.Namespace, Config], int]


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, dict[str, Any]] = {}
    if getattr(args, "data_dir", None):
        overrides["system"] = {"data_dir": args.data_dir}
    for flag in ("host", "port"):
        if getattr(args, flag, None) is not None:
            overrides.setdefault("gateway", {})[flag] = getattr(args, flag)
    for flag in ("format", "level"):
        if getattr(args, f"log_{flag}", None):
            overrides.setdefault("logging", {})[flag] = getattr(args, f"log_{flag}")
    return load_config(args.config, overrides=overrides)


def _start_logging(config: Config) -> None:
    """The process log of the server commands (README: Logs), set up once, first;
    and their thread switch interval (``system.switch_interval``)."""
    logs.configure(config.logging)
    sys.setswitchinterval(config.system.switch_interval)


def _needs_shared_broker(config: Config, what: str) -> None:
    if config.broker_url.startswith("memory://"):
        raise ConfigError(
            f"{what} needs a shared broker: set bus.broker_url "
            f"(PIPELINEJOBS_BUS_BROKER_URL=redis://host:6379/0); the in-process "
            f"broker exists only inside `pipelinejobs serve`"
        )


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    """Run everything in one process: gateway, actors on worker threads, SQLite."""
    from pipelinejobs.gateway import create_app
    from pipelinejobs.gateway.servers import serve_waitress

    # First: a busy port is one line, before any data directory or admin key exists.
    ports.check_free(config.gateway.host, config.gateway.port)
    if args.verbose and not args.log_level:
        config = config.replace("logging", level="DEBUG")
    _start_logging(config)
    multiprocess.start(config)  # before any metric is made (README: Metrics)
    with System(config).start_embedded() as system:
        keys = Keys(system.runtime.store, retries=config.store.cas_retries)
        if keys.count_active("admin") == 0:
            secret, _ = keys.create("admin", description="created by serve on first start")
            print("First start: an admin key was created. It is shown only now:")
            print(f"admin key: {secret}")
        host, port = config.gateway.host, config.gateway.port
        print(f"data: {config.data_dir.resolve()}")
        print(f"PipelineJobs serving on http://{host}:{port}", flush=True)
        serve_waitress(
            create_app(system.runtime),
            host=host,
            port=port,
            threads=config.gateway.threads,
            quiet=not args.verbose,
        )
    return 0


def cmd_gateway(args: argparse.Namespace, config: Config) -> int:
    """Run the production gateway under gunicorn (workers run separately)."""
    _needs_shared_broker(config, "the gateway")
    resolve_secrets(config)  # refuse weak secrets before forking anything
    bind = f"{config.gateway.host}:{config.gateway.port}"
    # Where gunicorn's master (gunicorn_hooks) and its workers keep their metrics.
    os.environ[multiprocess.ENV] = str(multiprocess.directory(config).resolve())
    # gunicorn's processes load the settings again: hand them the same file and the
    # log settings the flags chose (its logger class sets the process log up).
    if args.config:
        os.environ["PIPELINEJOBS_CONFIG"] = str(args.config)
    os.environ[env_name("logging", "format")] = config.logging.format
    os.environ[env_name("logging", "level")] = config.logging.level
    argv = [
        "gunicorn",
        "--bind",
        bind,
        "--workers",
        str(args.workers),
        "--threads",
        str(config.gateway.threads),
        # The app logs each request (pipelinejobs.gateway.request_log), gunicorn's own
        # lines go through the same handler; its access log stays off.
        "--logger-class",
        "pipelinejobs.gateway.request_log.GunicornLogger",
        # The master's hooks: the metrics directory claimed, dead workers' gauges dropped.
        "--config",
        "python:pipelinejobs.gateway.gunicorn_hooks",
        # Answers requests it cannot parse (a URL over the limit...) in JSON too.
        "--worker-class",
        "pipelinejobs.gateway.servers.JsonErrorWorker",
        "pipelinejobs.gateway.wsgi:create()",
    ]
    os.execvp(sys.executable, [sys.executable, "-m", *argv])
    return 0  # pragma: no cover - exec does not return


def cmd_worker(args: argparse.Namespace, config: Config) -> int:
    """Run a Celery worker for some actors (default: all) on the configured broker."""
    _needs_shared_broker(config, "a separate worker")
    _start_logging(config)
    actors = parse_actors(args.actors)
    metrics_dir = multiprocess.start(config)  # pool processes inherit it (README: Metrics)
    served = None
    if args.metrics_port and metrics_dir is not None:  # its own /metrics (no gateway here)
        served = exporter.spawn(metrics_dir, args.metrics_port, args.metrics_host)
    try:
        with System(config) as system:
            system.run_worker(
                actors, concurrency=args.concurrency, pool=args.pool, loglevel=config.logging.level
            )
    finally:
        if served is not None:
            served.terminate()
            served.wait(10)
    return 0


def cmd_send(args: argparse.Namespace, config: Config) -> int:
    """Send a message straight into the configured store and broker (no gateway)."""
    _needs_shared_broker(config, "`send`")
    message = boundary.decode(args.message, where="-m") if args.message else {}
    with System(config) as system:
        execution = system.send(args.actor, message, remote.key_values(args.query))
        if args.wait:
            execution = system.wait(execution["id"], timeout=args.wait)
        if args.json:  # the record, its message's secrets masked as the gateway shows it
            from pipelinejobs.gateway.http import redact

            masked = {k: redact(execution.get(k)) for k in ("message", "params")}
            write_json({**execution, **masked})
        else:
            show(remote.execution_lines(execution))
        if execution["status"] == "ERROR":
            error = execution.get("error") or {}
            print(
                f"pipelinejobs: execution {execution['id']} ended ERROR: "
                f"{printable(error.get('message') or error, 500)}",
                file=sys.stderr,
            )
            return 1
        return 0


def cmd_admin_token(args: argparse.Namespace, config: Config) -> int:
    """Mint an admin token (valid tokens.admin_token_ttl seconds)."""
    authority = token_authority(config)
    print(f"admin token, valid for {authority.admin_ttl:.0f} s:", file=sys.stderr)
    print(authority.mint_admin_token())
    return 0


def cmd_keys(args: argparse.Namespace, config: Config) -> int:
    """Create, list or revoke bearer keys, directly in the configured store."""
    config = resolve_secrets(config)
    store = open_store(config)
    try:
        # The secret signs JWT keys (--jwt), and checks them: the gateway holds the same.
        keys = Keys(store, retries=config.store.cas_retries, secret=config.tokens.secret)
        if args.action == "create":
            actors = parse_actors(args.actors) if args.actors else []
            secret, doc = keys.create(
                args.role,
                description=args.description,
                actors=actors,
                as_jwt=args.jwt,
                expires_in=args.expires_in,
            )
            print(f"created {doc['role']} key {doc['id'][:12]} (shown only now):", file=sys.stderr)
            print(secret)
        elif args.action == "list":
            for k in keys.list():
                state = "revoked" if k.get("revoked") else "active"
                print(
                    f"{k['id'][:12]}  {k['role']:<5} {state:<7} {k['created']}  "
                    f"{','.join(k.get('actors') or []) or 'all actors'}  "
                    f"{k.get('description', '')}"
                )
        else:
            if not args.key_id:
                raise ValidationError(
                    "keys revoke needs the key id (as keys list shows it)", path="key_id"
                )
            print(keys.revoke(args.key_id)["id"][:12])
    finally:
        store.close()
    return 0


def cmd_init(args: argparse.Namespace, config: Config) -> int:
    """Prepare the data directory: secrets, store tables; say where everything is."""
    config = resolve_secrets(config)
    store = open_store(config)
    try:
        store.ping()
        counts = {name: store.count(name) for name in COLLECTIONS}
    finally:
        store.close()
    print(f"mode: {config.system.mode}")
    where = f" at {config.sqlite_path}" if config.store.backend == "sqlite" else ""
    print(f"store: {config.store.backend}{where}")
    print("documents: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
    print(str(config.data_dir.resolve()))
    return 0


def cmd_quarantine(args: argparse.Namespace, config: Config) -> int:
    """List the records set aside as corrupt (newest first): when, which, and why."""
    store = open_store(resolve_secrets(config))
    try:
        where = {"collection": args.collection} if args.collection else None
        entries = store.find(QUARANTINE, where, order="date", descending=True, limit=10_000)
        for entry in entries.items:
            print(f"{entry['date']}  {entry['collection']} {entry['key']}  {entry['reason']}")
            if args.raw:
                print(f"    {entry['raw']}")
        print(f"{len(entries.items)} record(s) in the quarantine")
    finally:
        store.close()
    return 0


def cmd_config(args: argparse.Namespace, config: Config) -> int:
    """Print the effective settings as JSON, secrets masked."""
    values = dataclasses.asdict(config)
    for key in ("secret", "admin_secret"):
        if values["tokens"][key]:
            values["tokens"][key] = "********"
    print(json.dumps(values, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipelinejobs",
        description="PipelineJobs: pipelines and their jobs for a data catalog.",
        epilog="Local commands act on this machine's settings and store; the others talk to "
        "a gateway ($PIPELINEJOBS_URL, with the key in $PIPELINEJOBS_KEY). Results are "
        "printed on stdout for people (--json: the gateway's answer, for scripts); stderr "
        "says only what went wrong, or with -v each request.",
    )
    parser.add_argument("--version", action="version", version=f"pipelinejobs {__version__}")
    parser.add_argument(
        "--config", help="YAML settings file (default: $PIPELINEJOBS_CONFIG or ./config.yml)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command) -> argparse.ArgumentParser:
        doc = plain(func.__doc__ or "").replace("%", "%%")
        p = sub.add_parser(name, help=doc, description=doc)
        p.add_argument("--data-dir", help="embedded data directory (system.data_dir)")
        p.set_defaults(func=func, http=False)
        return p

    def log_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--log-format",
            choices=LOG_FORMATS,
            help="the process log: human lines or JSON lines (logging.format, default human)",
        )
        p.add_argument(
            "--log-level",
            type=str.upper,
            choices=LOG_LEVELS,
            help="the process log's level (logging.level, default INFO)",
        )

    serve = add("serve", cmd_serve)
    serve.add_argument("--host", help="listen address (gateway.host, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (gateway.port, default 8000)")
    serve.add_argument(
        "--verbose", action="store_true", help="DEBUG lines too (as --log-level DEBUG)"
    )
    log_flags(serve)
    gateway = add("gateway", cmd_gateway)
    log_flags(gateway)
    gateway.add_argument("--host")
    gateway.add_argument("--port", type=int)
    gateway.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    worker = add("worker", cmd_worker)
    worker.add_argument(
        "--actors",
        default="all",
        help="comma-separated actor aliases whose queues to consume (default all)",
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="worker processes/threads (default bus.worker_concurrency)",
    )
    worker.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="also serve this worker's metrics at http://HOST:PORT/metrics (README: Metrics)",
    )
    worker.add_argument(
        "--metrics-host", default="127.0.0.1", help="address of --metrics-port (no key check)"
    )
    log_flags(worker)
    # Celery's spelling, kept: the same as --log-level.
    worker.add_argument(
        "--loglevel", dest="log_level", type=str.upper, choices=LOG_LEVELS, help=argparse.SUPPRESS
    )
    send = add("send", cmd_send)
    send.add_argument("actor", help="actor alias or id")
    send.add_argument("-m", "--message", help="the JSON message")
    send.add_argument(
        "-q",
        "--query",
        action="append",
        metavar="KEY=VALUE",
        help="a URL-style parameter (repeatable)",
    )
    send.add_argument(
        "--wait",
        type=float,
        default=0,
        help="wait up to this many seconds for the execution to finish",
    )
    send.add_argument(
        "--json", action="store_true", help="print the execution record as JSON (for scripts)"
    )
    add("admin-token", cmd_admin_token)
    keys = add("keys", cmd_keys)
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("key_id", nargs="?", help="for revoke: the id keys list shows")
    keys.add_argument("--role", choices=ROLES, default="user")
    keys.add_argument("--description", default="")
    keys.add_argument("--actors", help="comma-separated actors the key may post to (default all)")
    keys.add_argument(
        "--jwt",
        action="store_true",
        help="issue the key as a signed JWT (HS256, the server's secret), accepted as a "
        "bearer key and in X-Tapis-Token; tapipy needs one, with --expires-in",
    )
    keys.add_argument(
        "--expires-in",
        type=float,
        metavar="SECONDS",
        help="the key stops being accepted this many seconds from now (a JWT's exp)",
    )
    add("init", cmd_init)
    quarantine = add("quarantine", cmd_quarantine)
    quarantine.add_argument("--collection", help="only records of this collection (e.g. jobs)")
    quarantine.add_argument("--raw", action="store_true", help="print each stored content too")
    add("config", cmd_config)
    remote.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.http:
            return int(args.func(args))
        return int(args.func(args, _config(args)))
    except PipelineJobsError as exc:
        print(f"pipelinejobs: error: {exc.message}", file=sys.stderr)
        for line in remote.explain(exc):
            print(f"  {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
