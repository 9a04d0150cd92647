"""The ``pipelinejobs`` command.

Two kinds of subcommands:

* **local** ones act on this machine's configuration, store and broker and need no
  server: ``serve`` (the embedded system), ``gateway`` and ``worker`` (production
  processes), ``init``, ``admin-token``, ``keys``, ``config``, ``send``,
  ``quarantine`` (records set aside as corrupt);
* **HTTP** ones talk to a gateway (:mod:`pipelinejobs.cli.remote`): ``run``, ``executions``,
  ``logs``, ``nonces``, ``jobs``, ``pipelines``.

Each prints its result alone on the last line of stdout, so scripts can take it with
``| tail -n 1``; errors go to stderr with a non-zero exit code and no traceback.
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
from pipelinejobs.cli import remote
from pipelinejobs.config import Config, load_config
from pipelinejobs.errors import ConfigError, PipelineJobsError, ValidationError
from pipelinejobs.runtime.system import System, parse_actors

Command = Callable[[argparse.Namespace, Config], int]


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, dict[str, Any]] = {}
    if getattr(args, "data_dir", None):
        overrides["system"] = {"data_dir": args.data_dir}
    for flag in ("host", "port"):
        if getattr(args, flag, None) is not None:
            overrides.setdefault("gateway", {})[flag] = getattr(args, flag)
    return load_config(args.config, overrides=overrides)


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
    argv = [
        "gunicorn",
        "--bind",
        bind,
        "--workers",
        str(args.workers),
        "--threads",
        str(config.gateway.threads),
        "--access-logfile",
        "-",
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
    actors = parse_actors(args.actors)
    with System(config) as system:
        system.run_worker(
            actors, concurrency=args.concurrency, pool=args.pool, loglevel=args.loglevel
        )
    return 0


def cmd_send(args: argparse.Namespace, config: Config) -> int:
    """Send a message straight into the configured store and broker (no gateway)."""
    _needs_shared_broker(config, "`send`")
    message = boundary.decode(args.message, where="-m") if args.message else {}
    with System(config) as system:
        execution = system.send(args.actor, message, remote.key_values(args.query))
        if args.wait:
            execution = system.wait(execution["id"], timeout=args.wait)
        print(json.dumps(execution, indent=2), file=sys.stderr)
        print(execution["id"])
        return 0 if execution["status"] != "ERROR" else 1


def cmd_admin_token(args: argparse.Namespace, config: Config) -> int:
    """Mint an admin token (valid tokens.admin_token_ttl seconds)."""
    authority = token_authority(config)
    print(f"admin token, valid for {authority.admin_ttl:.0f} s:", file=sys.stderr)
    print(authority.mint_admin_token())
    return 0


def cmd_keys(args: argparse.Namespace, config: Config) -> int:
    """Create, list or revoke bearer keys, directly in the configured store."""
    store = open_store(resolve_secrets(config))
    try:
        keys = Keys(store, retries=config.store.cas_retries)
        if args.action == "create":
            actors = parse_actors(args.actors) if args.actors else []
            secret, doc = keys.create(args.role, description=args.description, actors=actors)
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
    parser = argparse.ArgumentParser(prog="pipelinejobs", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pipelinejobs {__version__}")
    parser.add_argument(
        "--config", help="YAML settings file (default: $PIPELINEJOBS_CONFIG or ./config.yml)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command) -> argparse.ArgumentParser:
        doc = (func.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc, description=doc)
        p.add_argument("--data-dir", help="embedded data directory (system.data_dir)")
        p.set_defaults(func=func, http=False)
        return p

    serve = add("serve", cmd_serve)
    serve.add_argument("--host", help="listen address (gateway.host, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (gateway.port, default 8000)")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    gateway = add("gateway", cmd_gateway)
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
    worker.add_argument("--loglevel", default="INFO")
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
    add("admin-token", cmd_admin_token)
    keys = add("keys", cmd_keys)
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("key_id", nargs="?", help="for revoke: the id keys list shows")
    keys.add_argument("--role", choices=ROLES, default="user")
    keys.add_argument("--description", default="")
    keys.add_argument("--actors", help="comma-separated actors the key may post to (default all)")
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
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
