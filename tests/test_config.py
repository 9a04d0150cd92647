"""Settings: config.yml documents the defaults; env beats file; flags beat env."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import yaml

from pipelinejobs.config import Config, env_name, load_config
from pipelinejobs.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_config_yml_documents_every_default():
    documented = yaml.safe_load((ROOT / "config.yml").read_text())
    defaults = Config()
    expected = {
        section.name: dataclasses.asdict(getattr(defaults, section.name))
        for section in dataclasses.fields(defaults)
    }
    assert documented == expected


def test_defaults_without_any_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    assert config == Config()
    assert config.sqlite_path == Path("data/pipelinejobs.sqlite3")


def test_precedence_file_then_env_then_flags(tmp_path):
    file = tmp_path / "c.yml"
    file.write_text("store:\n  backend: memory\n  cas_retries: 5\nsystem:\n  data_dir: /x\n")
    env = {"PIPELINEJOBS_STORE_CAS_RETRIES": "7", "PIPELINEJOBS_SYSTEM_DATA_DIR": "/y"}
    config = load_config(file, env=env, overrides={"system": {"data_dir": "/z"}})
    assert config.store.backend == "memory"  # file
    assert config.store.cas_retries == 7  # env beats file
    assert config.system.data_dir == "/z"  # flag beats env
    assert config.sqlite_path == Path("/z/pipelinejobs.sqlite3")


def test_config_file_from_environment_variable(tmp_path):
    file = tmp_path / "c.yml"
    file.write_text("identifiers:\n  namespace_domain: example.org\n")
    config = load_config(env={"PIPELINEJOBS_CONFIG": str(file)})
    assert config.identifiers.namespace_domain == "example.org"


@pytest.mark.parametrize(("text", "needle"), [
    ("stor:\n  backend: sqlite\n", "unknown section 'stor'"),
    ("store:\n  backend: postgres\n", "store.backend"),
    ("store:\n  backedn: sqlite\n", "unknown setting 'store.backedn'"),
    ("store:\n  cas_retries: many\n", "store.cas_retries"),
    ("tokens:\n  admin_token_ttl: 0\n", "tokens.admin_token_ttl"),
    ("system:\n  switch_interval: 0\n", "system.switch_interval"),
    ("system:\n  switch_interval: -1\n", "system.switch_interval"),
    ("store: [1, 2]\n", "section 'store' must be a mapping"),
    ("store: {backend: [\n", "not valid YAML"),
])  # fmt: skip
def test_bad_files_are_refused_naming_the_setting(tmp_path, text, needle):
    file = tmp_path / "c.yml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
        load_config(file, env={})


def test_bad_environment_value_names_the_variable_source():
    with pytest.raises(ConfigError) as info:
        load_config(env={"PIPELINEJOBS_TOKENS_ADMIN_TOKEN_TTL": "soon"})
    assert info.value.detail["setting"] == "tokens.admin_token_ttl"
    assert info.value.detail["source"] == "environment"


def test_env_names_and_types():
    assert env_name("store", "backend") == "PIPELINEJOBS_STORE_BACKEND"
    config = load_config(env={"PIPELINEJOBS_STORE_SQLITE_BUSY_TIMEOUT": "2.5"})
    assert config.store.sqlite_busy_timeout == 2.5


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yml", env={})


@pytest.mark.parametrize(
    ("env", "setting", "message"),
    [
        (
            {"PIPELINEJOBS_GATEWAY_PUBLIC_URL": "api.example.org"},
            "gateway.public_url",
            "setting gateway.public_url is 'api.example.org'; it must be an http(s) URL with "
            "a host and no query, such as https://api.example.org",
        ),
        (
            {"PIPELINEJOBS_GATEWAY_TRUSTED_PROXIES": "10.0.0.1, proxy.local"},
            "gateway.trusted_proxies",
            "setting gateway.trusted_proxies: 'proxy.local' is not an IP address or network "
            "('proxy.local' does not appear to be an IPv4 or IPv6 network)",
        ),
    ],
)
def test_public_url_settings_are_checked_at_start(env, setting, message):
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    assert info.value.message == message
    assert info.value.detail["setting"] == setting


def test_trusted_proxies_are_networks():
    config = load_config(
        env={
            "PIPELINEJOBS_GATEWAY_TRUSTED_PROXIES": "10.0.0.5, 10.1.0.0/16,, ::1",
            "PIPELINEJOBS_GATEWAY_PUBLIC_URL": "https://api.example.org/pipelines/",
        }
    )
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.5/32", "10.1.0.0/16", "::1/128"]
    assert Config().trusted_proxies == ()


def test_server_processes_take_the_switch_interval(tmp_path):
    from pipelinejobs.cli import _start_logging

    before = sys.getswitchinterval()
    try:
        config = load_config(env={"PIPELINEJOBS_SYSTEM_SWITCH_INTERVAL": "0.0025"})
        _start_logging(config)
        assert sys.getswitchinterval() == pytest.approx(0.0025)
    finally:
        sys.setswitchinterval(before)
