"""Pipeline components: their kinds, the schema of the runnable ones, and what a job of
one runs given a launch's variables (common/components.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pipelinejobs.domain import components, validation
from pipelinejobs.domain.components import Compute, check_components, compute, kind, runnable
from pipelinejobs.errors import SchemaValidationError, ValidationError

COMMAND = {
    "id": "step-0.1",
    "command": ["python3", "/opt/step.py", "${SAMPLE}", "--level", "${LEVEL}", "x${SAMPLE}"],
    "environment": {"FIXED": "x"},
    "variables": {
        "SAMPLE": {"description": "a sample", "pattern": "^[A-Za-z0-9_.-]+$", "required": True},
        "LEVEL": {"default": "1", "pattern": "[0-3]"},
        "NOTE": {},
    },
}
CONTAINER = {
    "repo": "example/step:0.1",
    "hash": "a" * 64,
    "options": {"entrypoint": ["/bin/step"], "variables": {"SAMPLE": {}}, "smoke": True},
}
APP = {"id": "tacobot-0.1", "inputs": {}, "parameters": {"CONTAINER_IMAGE": "sd2e/t:0.1"}}
ACTOR = {"id": "G1p783PxpalBB", "repo": "sd2e/reactor:latest"}
SERVICE = {"uri": "https://example.org/"}


@pytest.mark.parametrize(("component", "expected"), [
    (COMMAND, "command"),
    (CONTAINER, "container"),
    (APP, "agave_app"),
    (ACTOR, "abaco_actor"),
    (SERVICE, "service"),
])  # fmt: skip
def test_kinds(component, expected):
    assert kind(component) == expected
    assert validation.is_valid("pipeline_manager_create", {"name": "p", "components": [component]})


@pytest.mark.parametrize(("definition", "listed", "expected"), [
    ({}, [APP, CONTAINER, COMMAND], CONTAINER),  # the first runnable one
    ({"appId": "step-0.1"}, [APP, CONTAINER, COMMAND], COMMAND),
    ({"appId": "tacobot-0.1"}, [APP, CONTAINER], None),  # the app named: it runs elsewhere
    ({"appId": "G1p783PxpalBB"}, [ACTOR, COMMAND], None),
    ({"appId": "nothing"}, [APP, COMMAND], COMMAND),
    ({}, [APP, ACTOR, SERVICE], None),
])  # fmt: skip
def test_the_component_a_job_runs(definition, listed, expected):
    assert runnable({"components": listed}, definition) == expected


def test_variables_fill_whole_argv_elements_and_the_environment():
    ran = compute(COMMAND, {"appId": "step-0.1", "parameters": {"SAMPLE": "s.1"}})
    assert ran == Compute(
        kind="command",
        argv=["python3", "/opt/step.py", "s.1", "--level", "1", "x${SAMPLE}"],
        environment={"FIXED": "x", "SAMPLE": "s.1", "LEVEL": "1"},  # NOTE unset: absent
    )


@pytest.mark.parametrize(("value", "text"), [
    (True, "true"), (False, "false"), (3, "3"), (2.5, "2.5"), ("3", "3"),
])  # fmt: skip
def test_scalars_arrive_as_json_spells_them(value, text):
    ran = compute(COMMAND, {"parameters": {"SAMPLE": "s", "NOTE": value}})
    assert ran.environment["NOTE"] == text


def test_inputs_set_variables_too_and_a_container_keeps_its_image():
    ran = compute(CONTAINER, {"inputs": {"SAMPLE": "agave://data/x.csv"}})
    assert ran.image == f"example/step:0.1@sha256:{'a' * 64}"
    assert ran.argv is None and ran.entrypoint == ["/bin/step"]  # the image's own command
    assert ran.environment == {"SAMPLE": "agave://data/x.csv"}


@pytest.mark.parametrize(("definition", "path", "needle"), [
    ({"parameters": {"SAMPLE": "s", "OTHER": "x"}}, "job_definition/parameters/OTHER",
     "it declares: LEVEL, NOTE, SAMPLE"),
    ({"inputs": {"file1": "agave://x"}, "parameters": {"SAMPLE": "s"}},
     "job_definition/inputs/file1", "not a variable"),
    ({"parameters": {"SAMPLE": "s;id"}}, "job_definition/parameters/SAMPLE", "pattern"),
    ({"parameters": {"SAMPLE": "s\n"}}, "job_definition/parameters/SAMPLE", "pattern"),  # whole
    ({"parameters": {"SAMPLE": "s", "LEVEL": "12"}}, "job_definition/parameters/LEVEL", "pattern"),
    ({"parameters": {}}, "job_definition/parameters/SAMPLE", "is required"),
    ({"parameters": {"SAMPLE": ["s"]}}, "job_definition/parameters/SAMPLE", "string, number"),
    ({"parameters": {"SAMPLE": None}}, "job_definition/parameters/SAMPLE", "string, number"),
    ({"parameters": {"SAMPLE": "s", "NOTE": "a\x00b"}}, "job_definition/parameters/NOTE", "NUL"),
    ({"parameters": {"SAMPLE": "s"}, "inputs": {"SAMPLE": "t"}}, "job_definition/inputs/SAMPLE",
     "both"),
    ({"parameters": ["SAMPLE"]}, "job_definition/parameters", "object"),
])  # fmt: skip
def test_what_a_launch_sets_is_checked_against_the_declaration(definition, path, needle):
    with pytest.raises(ValidationError) as info:
        compute(COMMAND, definition)
    assert info.value.detail["path"] == path
    assert needle in info.value.message


@pytest.mark.parametrize("field", components.COMPUTE_FIELDS)
def test_a_launch_that_says_what_runs_is_refused(field):
    with pytest.raises(ValidationError) as info:
        components.refuse_compute_fields({"appId": "x", field: "anything"})
    assert info.value.detail["path"] == f"job_definition/{field}"


# -- registering ---------------------------------------------------------------------------------


def with_component(component: dict[str, Any]) -> dict[str, Any]:
    return {"name": "p", "components": [APP, component]}


@pytest.mark.parametrize(("component", "path"), [
    ({"id": "x", "command": "python3 step.py"}, "components/1/command"),  # a string: no shell
    ({"id": "x", "command": []}, "components/1/command"),
    ({"id": "x", "command": ["a", 3]}, "components/1/command/1"),
    ({"id": "x", "command": ["a\x00b"]}, "components/1/command/0"),
    ({"command": ["true"]}, "components/1"),  # no id to launch it by
    ({"id": "x", "command": ["true"], "inputs": {}, "parameters": {}}, "components/1"),
    ({"id": "x", "command": ["true"], "environment": {"A": 1}}, "components/1/environment/A"),
    ({"id": "x", "command": ["true"], "environment": {"A B": "1"}}, "components/1/environment"),
    ({"id": "x", "command": ["true"], "variables": {"V": {"secret": 1}}},
     "components/1/variables/V"),
    ({"id": "x", "command": ["true"], "variables": {"1V": {}}}, "components/1/variables"),
    ({"repo": "ex/c:1", "options": {"command": "run.sh"}}, "components/1/options/command"),
    ({"repo": "ex/c:1", "options": {"entrypoint": [1]}}, "components/1/options/entrypoint/0"),
])  # fmt: skip
def test_the_schema_refuses_malformed_runnable_components(component, path):
    with pytest.raises(SchemaValidationError) as info:
        validation.validate("pipeline_manager_create", with_component(component))
    assert info.value.path == path


def test_a_malformed_component_error_names_the_command_form_too():
    with pytest.raises(SchemaValidationError) as info:
        validation.validate("pipeline_manager_create", {"name": "p", "components": [{"x": 1}]})
    for form in ("agave_app", "abaco_actor", "service", "container", "command"):
        assert form in info.value.message


@pytest.mark.parametrize(("component", "path"), [
    ({"id": "x", "command": ["run", "${NOPE}"]}, "components/1/command/1"),
    ({"id": "x", "command": ["run"], "variables": {"V": {"pattern": "(a"}}},
     "components/1/variables/V/pattern"),
    ({"id": "x", "command": ["run"], "variables": {"V": {"pattern": "[a-z]+", "default": "A"}}},
     "components/1/variables/V/default"),
    ({"id": "x", "command": ["run"], "variables": {"PIPELINEJOBS_JOB_TOKEN": {}}},
     "components/1/variables/PIPELINEJOBS_JOB_TOKEN"),
    ({"repo": "ex/c:1", "options": {"entrypoint": ["${E}"]}}, "components/1/options/entrypoint/0"),
])  # fmt: skip
def test_registration_checks_what_the_schema_cannot(component, path):
    validation.validate("pipeline_manager_create", with_component(component))
    with pytest.raises(ValidationError) as info:
        check_components(with_component(component)["components"])
    assert info.value.detail["path"] == path


def test_sound_components_pass_the_registration_checks():
    check_components([APP, COMMAND, CONTAINER, ACTOR, SERVICE])
