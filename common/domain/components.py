"""Pipeline components: what kind each one is, and what a job of a runnable one runs.

Compute is defined by pipelines, not by messages. Two component kinds run on this
deployment's own machines, and registering a pipeline with either needs an admin key
(the pipelines-manager checks it), so what runs here is only ever what an admin
declared:

- ``command`` — ``{"id", "command": [argv], "environment": {...}, "variables": {...}}``,
  run by the local launcher as a subprocess;
- ``container`` — ``{"repo", "hash", "options": {"command", "entrypoint",
  "environment", "variables"}}``, run by the docker launcher.

The others — ``agave_app``, ``abaco_actor``, ``service`` — run elsewhere: their jobs
are callback jobs (or inline ones, for trying things out), whatever image an app's
``CONTAINER_IMAGE`` names.

A launch chooses none of it: a ``job_definition`` carrying ``command``, ``image``,
``entrypoint`` or ``environment`` is refused. It sets only the component's declared
**variables**, by name, in ``job_definition.parameters`` or ``inputs`` (Agave's two
ways of parameterising an app). Each value reaches the job as an environment variable
of that name, and an argv element that is exactly ``${NAME}`` is replaced by it as
one element — no splitting, no shell, no substitution inside a longer element, so
``$(...)``, ``;`` or another ``${...}`` in a value arrive as the literal text they are.
A variable may declare a ``pattern`` (RE2, which the whole value must match), a
``default`` and ``required``. An undeclared name, a value that is not a string,
number or boolean, one not matching its pattern, or a missing required one is refused
with the field's path (``job_definition/parameters/NAME``) and the declared names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import re2

from pipelinejobs.errors import ValidationError

COMMAND, CONTAINER = "command", "container"
AGAVE_APP, ABACO_ACTOR, SERVICE = "agave_app", "abaco_actor", "service"
#: The kinds that run on this deployment's machines (admin-only to register).
RUNNABLE = (COMMAND, CONTAINER)
#: What a launch's job_definition may not say: what runs is the pipeline's.
COMPUTE_FIELDS = ("command", "image", "entrypoint", "environment")
#: Names the job's own coordinates take (PIPELINEJOBS_JOB_TOKEN...): no variable may.
RESERVED_PREFIX = "PIPELINEJOBS_"
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def kind(component: Mapping[str, Any]) -> str:
    """Which kind of component this is (the schema's names)."""
    if "command" in component:
        return COMMAND
    if "repo" in component:
        return ABACO_ACTOR if "id" in component else CONTAINER
    return SERVICE if "uri" in component else AGAVE_APP


def runnable_components(components: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(position, component) of each command or container component."""
    for i, component in enumerate(components or ()):
        if isinstance(component, Mapping) and kind(component) in RUNNABLE:
            yield i, component


def runnable(
    pipeline: Mapping[str, Any], definition: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The component a job of ``pipeline`` runs here, None when its jobs run elsewhere.

    A launch whose ``appId`` names one of the pipeline's components runs that one (an
    Agave app or an Abaco actor runs elsewhere); otherwise — no ``appId``, or one
    naming none of them — the pipeline's first command or container component.
    """
    listed = [c for c in pipeline.get("components") or () if isinstance(c, Mapping)]
    app = definition.get("appId")
    named = [c for c in listed if app and c.get("id") == app]
    if named:
        return named[0] if kind(named[0]) in RUNNABLE else None
    found = [c for _, c in runnable_components(listed)]
    return found[0] if found else None


@dataclass(frozen=True)
class Spec:
    """What a runnable component declares, wherever its kind keeps it."""

    argv: list[str] | None
    entrypoint: list[str] | None
    environment: dict[str, str]
    variables: dict[str, dict[str, Any]]


def spec_of(component: Mapping[str, Any]) -> Spec:
    where = component if kind(component) == COMMAND else component.get("options") or {}
    return Spec(
        argv=list(where["command"]) if where.get("command") else None,
        entrypoint=list(where["entrypoint"]) if where.get("entrypoint") else None,
        environment=dict(where.get("environment") or {}),
        variables={str(k): dict(v) for k, v in (where.get("variables") or {}).items()},
    )


def image_of(component: Mapping[str, Any]) -> str:
    """A container component's image: ``repo``, pinned by ``@hash`` when it has one."""
    repo, digest = str(component["repo"]), component.get("hash")
    if not digest:
        return repo
    digest = str(digest)
    return f"{repo}@{digest if ':' in digest else 'sha256:' + digest}"


@dataclass(frozen=True)
class Compute:
    """What one job runs: the component's argv with the launch's variables in place,
    and its environment (the component's fixed one plus every variable set)."""

    kind: str
    argv: list[str] | None
    entrypoint: list[str] | None = None
    image: str | None = None
    environment: dict[str, str] = field(default_factory=dict)


def refuse_compute_fields(definition: Mapping[str, Any]) -> None:
    """Refuse a launch that tries to say what runs."""
    for name in COMPUTE_FIELDS:
        if name in definition:
            raise ValidationError(
                f"job_definition.{name} is not accepted: compute is defined by the "
                f"pipeline's component (a command or container component, registered with "
                f"an admin key); a launch sets only the variables that component declares, "
                f"in job_definition.parameters",
                path=f"job_definition/{name}",
            )


def compute(component: Mapping[str, Any], definition: Mapping[str, Any]) -> Compute:
    """What a job of ``component`` runs, given the launch's ``definition``."""
    spec = spec_of(component)
    values = variable_values(spec.variables, definition)
    return Compute(
        kind=kind(component),
        argv=substitute(spec.argv, values),
        entrypoint=substitute(spec.entrypoint, values),
        image=image_of(component) if kind(component) == CONTAINER else None,
        environment={**spec.environment, **values},
    )


def substitute(argv: list[str] | None, values: Mapping[str, str]) -> list[str] | None:
    """``argv`` with each element that is exactly ``${NAME}`` replaced by its value
    ("" for a declared variable the launch left unset)."""
    if argv is None:
        return None
    out = []
    for arg in argv:
        whole = _REFERENCE.fullmatch(arg)
        out.append(values.get(whole.group(1), "") if whole else arg)
    return out


def variable_values(
    declared: Mapping[str, Mapping[str, Any]], definition: Mapping[str, Any]
) -> dict[str, str]:
    """The launch's value of each declared variable (or its default), checked."""
    allowed = sorted(declared)
    values: dict[str, str] = {}
    for where in ("parameters", "inputs"):
        given = definition.get(where) or {}
        if not isinstance(given, Mapping):
            raise ValidationError(
                f"job_definition.{where} must be an object", path=f"job_definition/{where}"
            )
        for name, value in given.items():
            path = f"job_definition/{where}/{name}"
            if name not in declared:
                raise ValidationError(
                    f"{name!r} is not a variable of this pipeline's component, so a launch "
                    f"cannot set it; it declares: {', '.join(allowed) or 'none'}",
                    path=path,
                    allowed=allowed,
                )
            if name in values:
                raise ValidationError(
                    f"variable {name!r} is set in both parameters and inputs", path=path
                )
            values[name] = _text(value, path)
            pattern = declared[name].get("pattern")
            if pattern is not None and not _compiled(str(pattern)).fullmatch(values[name]):
                raise ValidationError(
                    f"{values[name]!r} does not match the pattern of variable {name!r} ({pattern})",
                    path=path,
                    pattern=pattern,
                )
    for name, spec in declared.items():
        if name in values:
            continue
        if "default" in spec:
            values[name] = str(spec["default"])
        elif spec.get("required"):
            raise ValidationError(
                f"variable {name!r} is required by this pipeline's component; set it in "
                f"job_definition.parameters (declared: {', '.join(allowed)})",
                path=f"job_definition/parameters/{name}",
                allowed=allowed,
            )
    return values


def _text(value: Any, path: str) -> str:
    """A variable's value as the text a job gets (JSON's spelling of a scalar)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = json.dumps(value)
    else:
        raise ValidationError(
            f"a variable's value must be a string, number or boolean, not {type(value).__name__}",
            path=path,
        )
    if "\x00" in text:
        raise ValidationError("a variable's value cannot contain a NUL character", path=path)
    return text


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern)


def check_components(components: Any) -> None:
    """What the schema cannot say about runnable components, checked at registration:
    each variable's name is free and its pattern compiles (and fits its default), and
    every whole ``${NAME}`` of the argv is a declared variable."""
    for i, component in runnable_components(components):
        base = f"components/{i}" + ("" if kind(component) == COMMAND else "/options")
        spec = spec_of(component)
        for name, variable in spec.variables.items():
            path = f"{base}/variables/{name}"
            if name.startswith(RESERVED_PREFIX):
                raise ValidationError(
                    f"variable {name!r}: names starting {RESERVED_PREFIX} are the job's own "
                    f"coordinates",
                    path=path,
                )
            if "pattern" in variable:
                try:
                    compiled = _compiled(str(variable["pattern"]))
                except re2.error as exc:
                    raise ValidationError(
                        f"variable {name!r}: its pattern is not a usable RE2 regular "
                        f"expression: {exc}",
                        path=f"{path}/pattern",
                    ) from exc
                if "default" in variable and not compiled.fullmatch(str(variable["default"])):
                    raise ValidationError(
                        f"variable {name!r}: its default does not match its pattern",
                        path=f"{path}/default",
                    )
        for key, argv in (("command", spec.argv), ("entrypoint", spec.entrypoint)):
            for j, arg in enumerate(argv or ()):
                whole = _REFERENCE.fullmatch(arg)
                if whole and whole.group(1) not in spec.variables:
                    raise ValidationError(
                        f"{arg} names no declared variable (declared: "
                        f"{', '.join(sorted(spec.variables)) or 'none'})",
                        path=f"{base}/{key}/{j}",
                        allowed=sorted(spec.variables),
                    )
