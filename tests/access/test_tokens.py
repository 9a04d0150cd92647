"""Update tokens and admin tokens: stable, enforced, constant-time, expiring."""

from __future__ import annotations

import os
import stat

import pytest

from pipelinejobs.access.server_secrets import SECRETS_FILE, resolve_secrets, token_authority
from pipelinejobs.access.tokens import ADMIN_TOKEN_LENGTH, Grant, TokenAuthority
from pipelinejobs.config import load_config
from pipelinejobs.domain.identifiers import Identifiers
from pipelinejobs.errors import ConfigError, PermissionDenied

IDS = Identifiers("test.pipelinejobs")
JOB = IDS.typed("a job", "pipelinejob")
OTHER = IDS.typed("another job", "pipelinejob")


@pytest.fixture
def authority(clock) -> TokenAuthority:
    return TokenAuthority("s" * 32, "a" * 32, admin_ttl=30, clock=clock)


def test_update_token_is_16_hex_and_stable(authority):
    token = authority.update_token(JOB)
    assert len(token) == 16 and int(token, 16) >= 0
    assert authority.update_token(JOB) == token
    assert authority.authorize(JOB, 0, token) is Grant.UPDATE


def test_update_token_depends_on_secret_document_and_rotation(authority):
    token = authority.update_token(JOB)
    assert TokenAuthority("t" * 32, "a" * 32).update_token(JOB) != token
    assert authority.update_token(OTHER) != token
    assert authority.update_token(JOB, 1) != token


@pytest.mark.parametrize("forged", ["0dc73dc3ff39b49a", "", None, "x" * 16, "zz"])
def test_forged_or_missing_tokens_are_refused(authority, forged):
    with pytest.raises(PermissionDenied) as info:
        authority.authorize(JOB, 0, forged)
    assert JOB in info.value.message


def test_a_token_for_another_document_is_refused(authority):
    with pytest.raises(PermissionDenied, match="not the update token"):
        authority.authorize(JOB, 0, authority.update_token(OTHER))


def test_rotation_invalidates_the_old_token(authority):
    old = authority.update_token(JOB, 0)
    with pytest.raises(PermissionDenied):
        authority.authorize(JOB, 1, old)
    assert authority.authorize(JOB, 1, authority.update_token(JOB, 1)) is Grant.UPDATE


def test_admin_token_accepted_at_29_s_refused_at_31_s(authority, clock):
    token = authority.mint_admin_token()
    assert len(token) == ADMIN_TOKEN_LENGTH == 17
    clock.advance(29)
    assert authority.authorize(JOB, 0, token) is Grant.ADMIN
    assert authority.authorize(OTHER, 7, token, admin_only=True) is Grant.ADMIN
    clock.advance(2)
    with pytest.raises(PermissionDenied, match="expired"):
        authority.authorize(JOB, 0, token)


def test_admin_only_actions_refuse_update_tokens(authority):
    with pytest.raises(PermissionDenied, match="admin token"):
        authority.authorize(JOB, 0, authority.update_token(JOB), admin_only=True, action="reset")


def test_admin_token_from_another_secret_or_tampered_is_refused(authority, clock):
    foreign = TokenAuthority("s" * 32, "b" * 32, clock=clock).mint_admin_token()
    assert not authority.is_admin_token(foreign)
    token = authority.mint_admin_token()
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert not authority.is_admin_token(tampered)
    later = token[:7] + ("z" if token[7] != "z" else "y") + token[8:]  # change the time
    assert not authority.is_admin_token(later)


def test_admin_token_from_the_far_future_is_refused(authority, clock):
    token = authority.mint_admin_token()
    clock.advance(-60)
    with pytest.raises(PermissionDenied, match="future"):
        authority.authorize(JOB, 0, token)


def test_configurable_admin_ttl(clock):
    authority = TokenAuthority("s" * 32, "a" * 32, admin_ttl=5, clock=clock)
    token = authority.mint_admin_token()
    clock.advance(6)
    assert not authority.is_admin_token(token)


def test_embedded_mode_generates_secrets_once_with_mode_0600(tmp_path):
    config = load_config(env={}, overrides={"system": {"data_dir": str(tmp_path)}})
    first = resolve_secrets(config)
    path = tmp_path / SECRETS_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first.tokens.secret) >= 32 and first.tokens.secret != first.tokens.admin_secret
    again = resolve_secrets(config)
    assert again.tokens == first.tokens
    # Tokens handed out before a restart stay valid after it.
    assert token_authority(config).update_token(JOB) == token_authority(config).update_token(JOB)


def test_configured_secrets_win_over_generated(tmp_path):
    config = load_config(
        env={"PIPELINEJOBS_TOKENS_SECRET": "x" * 20},
        overrides={"system": {"data_dir": str(tmp_path)}},
    )
    assert resolve_secrets(config).tokens.secret == "x" * 20


@pytest.mark.parametrize(("secret", "admin", "needle"), [
    ("", "a" * 32, "tokens.secret is empty"),
    ("changeme", "a" * 32, "tokens.secret is empty or a placeholder"),
    ("s" * 32, "short", "tokens.admin_secret is shorter"),
])  # fmt: skip
def test_production_refuses_empty_or_default_secrets(tmp_path, secret, admin, needle):
    config = load_config(
        env={
            "PIPELINEJOBS_SYSTEM_MODE": "production",
            "PIPELINEJOBS_SYSTEM_DATA_DIR": str(tmp_path),
            "PIPELINEJOBS_TOKENS_SECRET": secret,
            "PIPELINEJOBS_TOKENS_ADMIN_SECRET": admin,
        }
    )
    with pytest.raises(ConfigError, match=needle) as info:
        resolve_secrets(config)
    assert "PIPELINEJOBS_TOKENS_" in info.value.message
    assert not (tmp_path / SECRETS_FILE).exists()


def test_damaged_secrets_file_is_reported(tmp_path):
    (tmp_path / SECRETS_FILE).write_text('{"secret": ""}')
    config = load_config(env={}, overrides={"system": {"data_dir": str(tmp_path)}})
    with pytest.raises(ConfigError, match="damaged"):
        resolve_secrets(config)
