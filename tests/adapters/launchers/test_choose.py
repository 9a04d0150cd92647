"""Which backend runs a job (common/launchers choose and make_launcher), and maxRunTime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.adapters.launchers import BACKENDS, choose, make_launcher, needs_callback
from pipelinejobs.adapters.launchers.base import max_run_time
from pipelinejobs.adapters.launchers.callback import CallbackLauncher
from pipelinejobs.adapters.launchers.docker import DockerLauncher
from pipelinejobs.adapters.launchers.inline import InlineLauncher
from pipelinejobs.adapters.launchers.local import LocalLauncher
from pipelinejobs.adapters.launchers.slurm import SlurmLauncher
from pipelinejobs.adapters.storage import LocalStorage
from pipelinejobs.errors import ConfigError, PermissionDenied, ValidationError, http_status
from tests.support import runtime_config

CONTAINER = {"repo": "example/tacobot:0.1"}
APP = {"id": "tacobot-0.1", "inputs": {}, "parameters": {"CONTAINER_IMAGE": "sd2e/t:0.1"}}
ACTOR = {"id": "actor-1", "repo": "sd2e/actor:1"}
COMMAND = {"id": "step-1", "command": ["python3", "/opt/step.py"]}
SLURM = {"id": "align-1", "command": ["/opt/align"], "slurm": {"account": "lab"}}


def config(tmp_path: Path, backend: str = "auto", mode: str = "embedded", **launcher: Any):
    return runtime_config(
        tmp_path, system={"mode": mode}, launcher={"backend": backend, **launcher}
    )


@pytest.mark.parametrize(("definition", "components", "backend"), [
    ({}, [CONTAINER], "docker"),
    ({}, [COMMAND], "local"),
    ({}, [APP, CONTAINER], "docker"),  # no appId: the runnable component
    ({"appId": "tacobot-0.1"}, [APP, CONTAINER], "callback"),  # the app it names
    ({"appId": "step-1"}, [CONTAINER, COMMAND], "local"),
    ({"appId": "unknown"}, [CONTAINER, COMMAND], "docker"),  # else the first runnable
    ({"outputs": {"a.txt": "a"}}, [APP], "inline"),
    ({"report": ["RUNNING"]}, [APP], "inline"),
    ({}, [APP], "callback"),
    ({}, [ACTOR], "callback"),  # an Abaco actor's repo is not a container component
    ({}, [{"uri": "https://example.org/service"}], "callback"),
    ({"launcher": "callback"}, [CONTAINER], "callback"),  # explicit: what it can run on
    ({"launcher": "inline"}, [COMMAND], "inline"),
    ({}, [SLURM], "slurm"),  # a command component declaring slurm runs there
    ({"appId": "align-1"}, [COMMAND, SLURM], "slurm"),
    ({"launcher": "callback"}, [SLURM], "callback"),
])  # fmt: skip
def test_auto_choice_by_what_the_pipeline_runs(tmp_path, definition, components, backend):
    cfg = config(tmp_path, backends="inline, local, docker, callback, slurm")
    assert choose(cfg, definition, {"components": components}) == backend


@pytest.mark.parametrize(("backend", "components"), [
    ("inline", [CONTAINER]),
    ("callback", [CONTAINER]),
    ("docker", [CONTAINER]),
    ("local", [COMMAND]),
])  # fmt: skip
def test_the_configured_backend_overrides_the_automatic_choice(tmp_path, backend, components):
    assert choose(config(tmp_path, backend), {}, {"components": components}) == backend


def test_an_explicit_launcher_overrides_the_configured_one(tmp_path):
    pipeline = {"components": [CONTAINER]}
    assert choose(config(tmp_path, "inline"), {"launcher": "docker"}, pipeline) == "docker"


@pytest.mark.parametrize(("definition", "components", "backend", "config_backend"), [
    ({"launcher": "local"}, [APP], "local", "auto"),  # an app runs elsewhere
    ({"launcher": "local"}, [CONTAINER], "local", "auto"),
    ({"launcher": "docker"}, [COMMAND], "docker", "auto"),
    ({"launcher": "docker"}, [APP], "docker", "auto"),  # its CONTAINER_IMAGE is not run here
    ({}, [APP], "local", "local"),  # the setting is held to the same rule
    ({"launcher": "local"}, [SLURM], "local", "auto"),  # its admin said: on Slurm
    ({"launcher": "slurm"}, [COMMAND], "slurm", "auto"),  # its admin said: locally
    ({"launcher": "slurm"}, [CONTAINER], "slurm", "auto"),
])  # fmt: skip
def test_a_backend_the_pipelines_component_cannot_run_on_is_refused(
    tmp_path, definition, components, backend, config_backend
):
    cfg = config(tmp_path, config_backend, backends="inline, local, docker, callback, slurm")
    with pytest.raises(ValidationError) as info:
        choose(cfg, definition, {"components": components})
    assert f"the {backend} backend" in info.value.message
    assert backend not in info.value.detail["allowed"]
    if "launcher" in definition:
        assert info.value.detail["path"] == "job_definition/launcher"


@pytest.mark.parametrize(("settings", "definition", "components", "backend", "allowed"), [
    ({"mode": "production"}, {}, [COMMAND], "local", ["inline", "docker", "callback"]),
    ({"backends": "inline, callback"}, {}, [CONTAINER], "docker", ["inline", "callback"]),
    ({"backends": "docker"}, {"launcher": "callback"}, [CONTAINER], "callback", ["docker"]),
    # slurm only where listed, in either mode
    ({}, {}, [SLURM], "slurm", ["inline", "local", "docker", "callback"]),
    ({"mode": "production"}, {}, [SLURM], "slurm", ["inline", "docker", "callback"]),
])  # fmt: skip
def test_a_backend_the_deployment_does_not_allow_is_403(
    tmp_path, settings, definition, components, backend, allowed
):
    mode = settings.pop("mode", "embedded")
    with pytest.raises(PermissionDenied) as info:
        choose(config(tmp_path, mode=mode, **settings), definition, {"components": components})
    assert http_status(info.value) == 403
    assert info.value.detail == {"backend": backend, "allowed": allowed}
    assert "launcher.backends allows: " + ", ".join(allowed) in info.value.message


@pytest.mark.parametrize(("mode", "backends", "allowed"), [
    ("embedded", "", ("inline", "local", "docker", "callback")),
    ("production", "", ("inline", "docker", "callback")),
    ("production", "local,inline, local", ("local", "inline")),
    ("production", "callback, slurm", ("callback", "slurm")),
])  # fmt: skip
def test_which_backends_a_deployment_allows(tmp_path, mode, backends, allowed):
    assert config(tmp_path, mode=mode, backends=backends).allowed_backends == allowed


@pytest.mark.parametrize(("settings", "setting"), [
    ({"backends": "inline,kubernetes"}, "launcher.backends"),
    ({"backends": "inline", "backend": "local"}, "launcher.backend"),
])  # fmt: skip
def test_a_backends_setting_that_makes_no_sense_stops_start_up(tmp_path, settings, setting):
    with pytest.raises(ConfigError) as info:
        runtime_config(tmp_path, launcher=settings)
    assert info.value.detail["setting"] == setting


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
        "slurm": SlurmLauncher,  # no Slurm command is run to make it
    }
    docker = make_launcher("docker", cfg, storage)
    assert isinstance(docker, DockerLauncher) and docker.docker_url == "tcp://127.0.0.1:1"
    assert all(make_launcher(name, cfg, storage).name == name for name in BACKENDS)
    assert [name for name in BACKENDS if needs_callback(name)] == [
        "local", "docker", "callback", "slurm"
    ]  # fmt: skip


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
