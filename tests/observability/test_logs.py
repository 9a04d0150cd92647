"""The process log: its two formats, its levels, secrets masked, Celery held back."""

from __future__ import annotations

import json
import logging
import re

import pytest
from celery import Celery
from celery.app import log as celery_log

from pipelinejobs.observability import logs
from tests.observability.log_capture import capture

#: The human line: time (UTC, ms), level padded to 5, then the message.
HUMAN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO |WARNING|ERROR) (.*)$")


def lines(buffer) -> list[str]:
    return buffer.getvalue().splitlines()


def test_a_human_line_is_timestamped_and_names_a_foreign_logger() -> None:
    with capture() as out:
        logging.getLogger("pipelinejobs.delivery").info("jobs-manager exec=X COMPLETE in 1.0 ms")
        logging.getLogger("celery.worker.consumer").warning("Connection to broker lost")
    ours, theirs = lines(out)
    assert HUMAN.match(ours).group(2) == "jobs-manager exec=X COMPLETE in 1.0 ms"
    assert HUMAN.match(theirs).groups() == (
        "WARNING",
        "celery.worker.consumer: Connection to broker lost",
    )


def test_a_json_line_has_the_records_fields() -> None:
    with capture("json") as out:
        logging.getLogger("pipelinejobs.http").info(
            "GET /jobs 200", extra={"event": "request", "status": 200, "duration_ms": 1.5}
        )
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("pipelinejobs.runtime").exception("it broke")
    first, second = (json.loads(line) for line in lines(out))
    assert first["level"] == "INFO" and first["logger"] == "pipelinejobs.http"
    assert first["message"] == "GET /jobs 200"
    assert (first["event"], first["status"], first["duration_ms"]) == ("request", 200, 1.5)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second["level"] == "ERROR" and "ValueError: boom" in second["traceback"]


def test_a_traceback_follows_a_human_line() -> None:
    with capture() as out:
        try:
            raise KeyError("k")
        except KeyError:
            logging.getLogger("x").exception("failed")
    text = out.getvalue()
    assert HUMAN.match(text.splitlines()[0]) and "KeyError: 'k'" in text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Authorization: Bearer sk-live-123", "Authorization: Bearer ********"),
        ("GET /x?uuid=107&token=0123456789abcdef&x-nonce=N0nce",
         "GET /x?uuid=107&token=********&x-nonce=********"),
        ('{"token": "0123456789abcdef", "name": "finish"}',
         '{"token": "********", "name": "finish"}'),
        ("PIPELINEJOBS_JOB_TOKEN=abc", "PIPELINEJOBS_JOB_TOKEN=********"),
        ("admin_secret: s3cr3t", "admin_secret: ********"),
        ("nonce_id=abc", "nonce_id=********"),
        # Not secrets: a key's id prefix, words about tokens, a count of tokens.
        ("job=1073 key:3f9a0c21d4e7", "job=1073 key:3f9a0c21d4e7"),
        ("the update token is wrong", "the update token is wrong"),
        ("tokens=3", "tokens=3"),
    ],
)  # fmt: skip
def test_scrub(text: str, masked: str) -> None:
    assert logs.scrub(text) == masked


@pytest.mark.parametrize("fmt", ["human", "json"])
def test_no_format_shows_a_secret_whoever_logs_it(fmt: str) -> None:
    with capture(fmt) as out:
        logging.getLogger("gunicorn.error").warning(
            "Invalid request from ip=1.2.3.4: 'GET /a?x-nonce=SECRETNONCE HTTP/1.1'"
        )
        logging.getLogger("somewhere").info(
            "calling with Bearer SECRETKEY", extra={"token": "SECRETTOKEN", "headers": {
                "Authorization": "Bearer SECRETKEY2"}}
        )  # fmt: skip
    text = out.getvalue()
    for secret in ("SECRETNONCE", "SECRETKEY", "SECRETTOKEN", "SECRETKEY2"):
        assert secret not in text
    assert text.count("********") >= (2 if fmt == "human" else 4)  # json shows the fields


def test_configure_replaces_its_own_handler_and_keeps_others() -> None:
    other = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(other)
    try:
        with capture() as first:
            logs.configure(format="json", stream=first)
            ours = [h for h in root.handlers if type(h).__name__ == "_Handler"]
            assert len(ours) == 1 and other in root.handlers
            logging.getLogger("pipelinejobs.x").warning("once")
        assert len(lines(first)) == 1  # not twice: one handler
    finally:
        root.removeHandler(other)


def test_info_quietens_what_repeats_an_executions_outcome_and_debug_does_not() -> None:
    with capture("human", "INFO") as out:
        logging.getLogger("pipelinejobs.actor.jobs-manager").info("Sent index to jobs-indexer")
        logging.getLogger("celery.app.trace").info("Task succeeded")
        logging.getLogger("pipelinejobs.actor.jobs-manager").warning("No checksum for x")
        logging.getLogger("pipelinejobs.http").debug("GET /healthz 200")
    assert [HUMAN.match(line).group(2).split(": ", 1)[1] for line in lines(out)] == [
        "No checksum for x"
    ]
    with capture("human", "DEBUG") as out:
        logging.getLogger("pipelinejobs.actor.jobs-manager").info("Sent index to jobs-indexer")
        logging.getLogger("celery.app.trace").info("Task succeeded")
    assert len(lines(out)) == 2


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        logs.configure(format="xml")
    with pytest.raises(ValueError, match="log level"):
        logs.configure(level="LOUD")


def test_a_celery_worker_starting_adds_no_handler_of_its_own() -> None:
    """Celery sets logging up when a worker starts unless a ``setup_logging``
    receiver exists: with ours connected it leaves the root logger as it is (no
    second handler printing every line twice) and does not redirect stdout."""
    app = Celery("t", broker="memory://")
    root = logging.getLogger()
    with capture() as out:
        before = list(root.handlers)
        was_setup = celery_log.Logging._setup
        celery_log.Logging._setup = False
        try:
            handled = app.log.setup(loglevel="INFO", redirect_stdouts=True)
        finally:
            celery_log.Logging._setup = was_setup
        assert handled  # our receiver answered
        assert root.handlers == before
        logging.getLogger("celery.worker").info("celery@host ready.")
    assert lines(out)[-1].endswith("INFO  celery.worker: celery@host ready.")
    app.close()
