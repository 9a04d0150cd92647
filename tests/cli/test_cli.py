"""The pipelinejobs command: results alone on the last line, errors without tracebacks."""

from __future__ import annotations

import json

import pytest

from pipelinejobs.access.server_secrets import token_authority
from pipelinejobs.cli import main
from pipelinejobs.config import load_config


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_admin_token_is_alone_on_the_last_line_and_valid(capsys, tmp_path):
    code, out, _ = run(capsys, "admin-token", "--data-dir", str(tmp_path))
    assert code == 0
    token = out.strip().splitlines()[-1]
    assert len(token) == 17
    config = load_config(env={}, overrides={"system": {"data_dir": str(tmp_path)}})
    assert token_authority(config).is_admin_token(token)


def test_admin_token_in_production_without_secrets_fails_clearly(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINEJOBS_SYSTEM_MODE", "production")
    monkeypatch.delenv("PIPELINEJOBS_TOKENS_SECRET", raising=False)
    code, out, err = run(capsys, "admin-token", "--data-dir", str(tmp_path))
    assert code == 2 and out == ""
    assert "tokens.secret" in err and "Traceback" not in err


def test_init_prepares_the_data_dir(capsys, tmp_path):
    code, out, _ = run(capsys, "init", "--data-dir", str(tmp_path))
    assert code == 0
    assert out.strip().splitlines()[-1] == str(tmp_path.resolve())
    assert (tmp_path / "secrets.json").exists()
    assert (tmp_path / "pipelinejobs.sqlite3").exists()


def test_config_masks_secrets(capsys, monkeypatch):
    monkeypatch.setenv("PIPELINEJOBS_TOKENS_SECRET", "do-not-print-this-value")
    code, out, _ = run(capsys, "config")
    assert code == 0
    assert "do-not-print-this-value" not in out
    assert json.loads(out)["tokens"]["secret"] == "********"


def test_bad_setting_is_an_error_not_a_traceback(capsys, monkeypatch):
    monkeypatch.setenv("PIPELINEJOBS_STORE_BACKEND", "postgres")
    code, _, err = run(capsys, "config")
    assert code == 2 and "store.backend" in err


def test_unknown_command_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["explode"])
    assert info.value.code == 2
