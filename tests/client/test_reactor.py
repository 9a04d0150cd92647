"""ReactorManagedPipelineJob's configuration: the ``pipelines`` stanza of ``config.yml``
(or a reactor's ``settings``) and ``_REACTOR_PIPELINES_*`` variables, as the seed's
Reactor example configures its ManagedPipelineJob."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelinejobs.client import ManagedPipelineJobError, ReactorManagedPipelineJob, reactor_settings

PIPELINE = "106bd127-e2d2-57ac-b9be-11ed06042e68"
CONFIG = f"""
logs:
  level: DEBUG
pipelines:
  pipeline_uuid: {PIPELINE}
  job_manager_id: G46vjoAVzGkkz
  job_indexer_id: jobs-indexer
"""


def test_the_stanza_and_the_secrets_configure_the_job(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(CONFIG)
    env = {
        "_abaco_api_server": "https://api.example.org",
        "_REACTOR_PIPELINES_JOB_MANAGER_NONCE": "PJ_manager-nonce-aaaaaaaaaaaaa",
        "_REACTOR_PIPELINES_JOB_LAUNCHER_NONCE": "PJ_launcher-nonce-aaaaaaaaaaaa",
    }
    job = ReactorManagedPipelineJob(
        None, {"reads": 1}, config_file=config, environ=env, sample_id="sample.tacc.1"
    )
    assert job.url == "https://api.example.org"
    assert (job.manager_id, job.indexer_id, job.launcher_id) == (
        "G46vjoAVzGkkz",
        "jobs-indexer",
        "launcher-proxy",
    )
    assert job.nonces == {
        "G46vjoAVzGkkz": "PJ_manager-nonce-aaaaaaaaaaaaa",
        "launcher-proxy": "PJ_launcher-nonce-aaaaaaaaaaaa",
    }
    assert job.client.key is None  # nonces only: no key was configured
    assert job.create_message() == {
        "action": "create",
        "pipeline_uuid": PIPELINE,
        "parameters": {"sample_id": "sample.tacc.1"},
        "data": {"reads": 1},
    }


def test_the_environment_overrides_the_file_and_a_key_may_be_given(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(CONFIG)
    env = {
        "_REACTOR_PIPELINES_JOB_MANAGER_ID": "jobs-manager",
        "_REACTOR_PIPELINES_API_SERVER": "http://gateway:8000",
        "PIPELINEJOBS_KEY": "a-bearer-key",
    }
    settings = reactor_settings(None, config, env)
    assert settings == {
        "api_server": "http://gateway:8000",
        "api_key": "a-bearer-key",
        "pipeline_uuid": PIPELINE,
        "job_manager_id": "jobs-manager",
        "job_indexer_id": "jobs-indexer",
    }
    job = ReactorManagedPipelineJob(config_file=config, environ=env, sample_id="sample.tacc.1")
    assert job.client.key == "a-bearer-key" and job.manager_id == "jobs-manager"


def test_a_reactor_object_lends_its_settings_and_its_nickname(tmp_path: Path) -> None:
    reactor = SimpleNamespace(
        settings={"pipelines": {"pipeline_uuid": PIPELINE, "job_manager_id": "jobs-manager"}},
        nickname="casual-bass",
    )
    job = ReactorManagedPipelineJob(
        reactor,
        config_file=tmp_path / "absent.yml",
        environ={"PIPELINEJOBS_URL": "http://127.0.0.1:9"},
        measurement_id=["measurement.tacc.1", "measurement.tacc.2"],
    )
    assert job.session == "casual-bass" and job.url == "http://127.0.0.1:9"
    assert job.create_message()["parameters"] == {
        "measurement_id": ["measurement.tacc.1", "measurement.tacc.2"]
    }


def test_without_a_config_file_the_defaults_hold(tmp_path: Path) -> None:
    job = ReactorManagedPipelineJob(
        config_file=tmp_path / "absent.yml", environ={}, pipeline_uuid=PIPELINE, sample_id="s"
    )
    assert job.url == "http://127.0.0.1:8000" and job.client.key is None
    assert (job.manager_id, job.indexer_id, job.launcher_id) == (
        "jobs-manager",
        "jobs-indexer",
        "launcher-proxy",
    )


def test_a_config_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("- just\n- a list\n")
    with pytest.raises(ManagedPipelineJobError) as caught:
        reactor_settings(None, config, {})
    assert caught.value.message == f"{config} does not hold a mapping of settings"
