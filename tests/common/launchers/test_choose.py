"""Which backend runs a job (common/launchers choose and make_launcher), and maxRunTime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.errors import ValidationError
from common.launchers import BACKENDS, choose, make_launcher, needs_callback
from common.launchers.base import max_run_time
from common.launchers.callback import CallbackLauncher
from common.launchers.docker import DockerLauncher
from common.launchers.inline import InlineLauncher
from common.launchers.local import LocalLauncher
from common.storage import LocalStorage
from tests.support import runtime_config

CONTAINER = {"repo": "example/tacobot:0.1"}
APP = {"id": "tacobot-0.1", "inputs": {}, "parameters": {"CONTAINER_IMAGE": "sd2e/t:0.1"}}
ACTOR = {"id": "actor-1", "repo": "sd2e/actor:1"}


def config(tmp_path: Path, backend: str = "auto", **launcher: Any):
    return runtime_config(tmp_path, launcher={"backend": backend, **launcher})


@pytest.mark.parametrize(("definition", "components", "backend"), [
    ({}, [CONTAINER], "docker"),
    ({"command": ["true"]}, [APP, CONTAINER], "docker"),  # a container component first
    ({"command": ["true"]}, [APP], "local"),
    ({"outputs": {"a.txt": "a"}}, [APP], "inline"),
    ({"report": ["RUNNING"]}, [APP], "inline"),
    ({}, [APP], "callback"),
    ({}, [ACTOR], "callback"),  # an Abaco actor's repo is not a container component
    ({}, [{"uri": "https://example.org/service"}], "callback"),
    ({"launcher": "local", "command": ["true"]}, [CONTAINER], "local"),  # explicit wins
    ({"launcher": "callback"}, [CONTAINER], "callback"),
])  # fmt: skip
def test_auto_choice_by_what_the_job_is(tmp_path, definition, components, backend):
    assert choose(config(tmp_path), definition, {"components": components}) == backend


@pytest.mark.parametrize("backend", ["inline", "local", "docker", "callback"])
def test_the_configured_backend_overrides_the_automatic_choice(tmp_path, backend):
    pipeline = {"components": [CONTAINER]}
    assert choose(config(tmp_path, backend), {"command": ["true"]}, pipeline) == backend


def test_an_explicit_launcher_overrides_the_configured_one(tmp_path):
    assert choose(config(tmp_path, "inline"), {"launcher": "docker"}, {}) == "docker"


@pytest.mark.parametrize("bad", ["kubernetes", "", "Docker", 3])
def test_an_unknown_explicit_launcher_is_refused(tmp_path, bad):
    with pytest.raises(ValidationError) as info:
        choose(config(tmp_path), {"launcher": bad}, {"components": [CONTAINER]})
    assert info.value.detail["path"] == "job_definition/launcher"
    assert info.value.detail["allowed"] == list(BACKENDS)


def test_make_launcher_builds_each_backend_without_connecting(tmp_path):
    cfg = config(tmp_path, docker_url="tcp://127.0.0.1:1")  # nothing listens there
    storage = LocalStorage(tmp_path / "storage")
    kinds = {name: type(make_launcher(name, cfg, storage)) for name in BACKENDS}
    assert kinds == {
        "inline": InlineLauncher,
        "local": LocalLauncher,
        "docker": DockerLauncher,
        "callback": CallbackLauncher,
    }
    docker = make_launcher("docker", cfg, storage)
    assert isinstance(docker, DockerLauncher) and docker.docker_url == "tcp://127.0.0.1:1"
    assert all(make_launcher(name, cfg, storage).name == name for name in BACKENDS)
    assert [name for name in BACKENDS if needs_callback(name)] == ["local", "docker", "callback"]


# -- maxRunTime ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [
    (None, None),
    ("", None),
    ("00:00:01", 1.0),
    ("01:00:00", 3600.0),
    ("00:59:59", 3599.0),
    ("48:30:15", 48 * 3600 + 30 * 60 + 15.0),  # Agave allows hours past 24
    ("123:00:00", 123 * 3600.0),
])  # fmt: skip
def test_max_run_time_is_hours_minutes_seconds(value, seconds):
    definition = {} if value is None else {"maxRunTime": value}
    assert max_run_time(definition) == seconds


@pytest.mark.parametrize(
    "bad",
    [
        "1:00",
        "aa:bb:cc",
        "00:00:00",
        "01:60:00",
        "01:00:60",
        "-1:00:00",
        " 01:00:00",
        "01:00:00\n",
        "٠١:٠٠:٠٠",
        3600,
    ],
)
def test_a_malformed_max_run_time_is_refused(bad):
    with pytest.raises(ValidationError) as info:
        max_run_time({"maxRunTime": bad})
    assert info.value.detail["path"] == "job_definition/maxRunTime"
