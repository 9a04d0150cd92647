"""The ``pipelinejobs`` command.

Subcommands that act on this machine's configuration and store (``init``,
``admin-token``, ``config``) work without a running server. Each prints its
result alone on the last line of stdout, so scripts can take it with
``| tail -n 1``; errors go to stderr with a non-zero exit code and no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence

from common import __version__
from common.config import Config, load_config
from common.errors import PipelineJobsError
from common.server_secrets import resolve_secrets, token_authority
from common.store import COLLECTIONS, open_store

Command = Callable[[argparse.Namespace, Config], int]


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, dict[str, str]] = {}
    if getattr(args, "data_dir", None):
        overrides["system"] = {"data_dir": args.data_dir}
    return load_config(args.config, overrides=overrides)


def cmd_admin_token(args: argparse.Namespace, config: Config) -> int:
    """Mint an admin token (valid tokens.admin_token_ttl seconds)."""
    authority = token_authority(config)
    print(f"admin token, valid for {authority.admin_ttl:.0f} s:", file=sys.stderr)
    print(authority.mint_admin_token())
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
    print(
        f"store: {config.store.backend}"
        + (f" at {config.sqlite_path}" if config.store.backend == "sqlite" else "")
    )
    print("documents: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
    print(str(config.data_dir.resolve()))
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

    def add(name: str, func: Command, *, data_dir: bool = True) -> argparse.ArgumentParser:
        doc = (func.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc, description=doc)
        if data_dir:
            p.add_argument("--data-dir", help="embedded data directory (system.data_dir)")
        p.set_defaults(func=func)
        return p

    add("init", cmd_init)
    add("admin-token", cmd_admin_token)
    add("config", cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, _config(args)))
    except PipelineJobsError as exc:
        print(f"pipelinejobs: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
