"""The server commands' log flags: settings, Celery's spelling, gunicorn's logger."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelinejobs import cli
from pipelinejobs.config import LoggingSettings


def settings(*argv: str) -> LoggingSettings:
    args = cli.build_parser().parse_args(list(argv))
    return cli._config(args).logging


def test_flags_override_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINEJOBS_LOGGING_FORMAT", "json")
    assert settings("serve") == LoggingSettings("json", "INFO")
    assert settings("serve", "--log-format", "human", "--log-level", "debug") == (
        LoggingSettings("human", "DEBUG")
    )
    assert settings("worker", "--loglevel", "warning").level == "WARNING"  # Celery's spelling


def test_a_bad_level_is_refused_naming_the_setting(monkeypatch, capsys) -> None:
    monkeypatch.setenv("PIPELINEJOBS_LOGGING_LEVEL", "LOUD")
    assert cli.main(["config"]) == 2
    assert "logging.level" in capsys.readouterr().err


def test_the_gateway_hands_gunicorn_its_logger_and_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(os, "execvp", lambda path, argv: ran.append(argv))
    # What the command exports for gunicorn's processes stays in this test.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINEJOBS_")}
    monkeypatch.setattr(os, "environ", environ)
    environ["PIPELINEJOBS_BUS_BROKER_URL"] = "redis://127.0.0.1:6379/7"
    config = tmp_path / "pj.yml"
    config.write_text(f"system:\n  data_dir: {tmp_path / 'data'}\n")
    assert cli.main(["--config", str(config), "gateway", "--log-format", "json"]) == 0
    (argv,) = ran
    assert "--access-logfile" not in argv  # the app's request line is the access log
    assert argv[argv.index("--logger-class") + 1] == (
        "pipelinejobs.gateway.request_log.GunicornLogger"
    )
    assert os.environ["PIPELINEJOBS_LOGGING_FORMAT"] == "json"
    assert os.environ["PIPELINEJOBS_LOGGING_LEVEL"] == "INFO"
    assert os.environ["PIPELINEJOBS_CONFIG"] == str(config)
