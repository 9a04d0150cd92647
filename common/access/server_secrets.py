"""Where the token secrets come from, and the refusal to run on a weak one.

In production the secrets must be configured (``tokens.secret`` and
``tokens.admin_secret``, usually through ``PIPELINEJOBS_TOKENS_SECRET`` and
``PIPELINEJOBS_TOKENS_ADMIN_SECRET``); an empty, placeholder or short one stops
start-up with a message that says which setting to set. The embedded mode is for a
first run with nothing configured, so it generates both secrets once and keeps them
in ``<data_dir>/secrets.json``, readable only by its owner (mode 0600): restarting
keeps every update token that was handed out valid.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from pipelinejobs.access.tokens import TokenAuthority
from pipelinejobs.config import Config, env_name
from pipelinejobs.errors import ConfigError

SECRETS_FILE = "secrets.json"
MIN_SECRET_LENGTH = 16
#: Values that are documentation, not secrets.
PLACEHOLDERS = frozenset({"", "changeme", "change-me", "secret", "default", "pipelinejobs"})


def _weak(value: str) -> str | None:
    if value.strip().lower() in PLACEHOLDERS:
        return "is empty or a placeholder"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def _load_or_create(path: Path) -> dict[str, str]:
    """Read the embedded secrets file, creating it atomically with mode 0600 if absent."""
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read embedded secrets {path}: {exc}") from exc
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) and data.get(k) for k in ("secret", "admin_secret")
        ):
            raise ConfigError(
                f"embedded secrets file {path} is damaged: it needs non-empty "
                f"'secret' and 'admin_secret'; remove it to generate new ones "
                f"(every issued update token will change)"
            )
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"secret": secrets.token_hex(32), "admin_secret": secrets.token_hex(32)}
    # O_EXCL: if two processes start together, exactly one writes and the other reads.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load_or_create(path)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return data


def resolve_secrets(config: Config) -> Config:
    """Return ``config`` with both token secrets present, or raise ConfigError.

    Configured secrets always win. Missing ones are generated only in embedded mode.
    """
    tokens = config.tokens
    if config.system.mode == "embedded":
        if tokens.secret and tokens.admin_secret:
            return config
        stored = _load_or_create(config.data_dir / SECRETS_FILE)
        return config.replace(
            "tokens",
            secret=tokens.secret or stored["secret"],
            admin_secret=tokens.admin_secret or stored["admin_secret"],
        )
    for key in ("secret", "admin_secret"):
        problem = _weak(getattr(tokens, key))
        if problem:
            raise ConfigError(
                f"tokens.{key} {problem}: in {config.system.mode} mode set a random value of "
                f"at least {MIN_SECRET_LENGTH} characters in config.yml or "
                f"{env_name('tokens', key)} (e.g. `python -c 'import secrets; "
                f"print(secrets.token_hex(32))'`)",
                setting=f"tokens.{key}",
            )
    return config


def token_authority(config: Config) -> TokenAuthority:
    """The :class:`TokenAuthority` for ``config``, resolving secrets first."""
    config = resolve_secrets(config)
    return TokenAuthority(
        config.tokens.secret,
        config.tokens.admin_secret,
        admin_ttl=float(config.tokens.admin_token_ttl),
    )
