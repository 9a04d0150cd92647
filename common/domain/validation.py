"""JSON Schema validation at the boundary, resolved offline.

Every schema in ``schemas/`` declares an ``$id`` under :data:`BASE_URI` and refers
to its neighbours by relative ``$ref``. They are loaded once into a
``referencing.Registry`` that has no ``retrieve`` hook, so an unknown reference is
an error and validation never touches the network.

Errors are turned into :class:`~pipelinejobs.errors.SchemaValidationError` naming the
schema's title and the failing field's path. For ``anyOf``/``oneOf`` failures the
message says which alternatives were tried and why each one failed — the seed's
"Tacobot 9001" pipeline is refused with ``components/0`` matching none of
agave_app, abaco_actor, service, container.

Speed: every message is validated twice (gateway and worker), so each schema is also
compiled by ``jsonschema-rs`` (:func:`compiled`), which answers "valid?" in a few
microseconds. Only a refusal is explained by ``jsonschema`` — the messages and field
paths above come from it alone — and when the two disagree, ``jsonschema``'s answer
stands. So that "valid" means exactly what it meant, the compiled validator checks
``pattern`` with this module's own ECMA-262 reading (Python's ``re``, the same
function) and ``format`` with the same ``FormatChecker``: ``jsonschema-rs``'s own
regex dialect differs from Python's (``\\s``, ``\\d``), and a looser answer there
would let through what the boundary refuses today. Setting
``PIPELINEJOBS_VALIDATION_CROSSCHECK=1`` asks both for every message and raises on a
disagreement in the dangerous direction (the test suite runs so).
"""

from __future__ import annotations

import json
import logging
import os
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError as JsonSchemaError
from jsonschema.exceptions import relevance
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from pipelinejobs.errors import SchemaValidationError

BASE_URI = "https://schema.catalog.sd2e.org/schemas/"


def _schema_files() -> dict[str, dict[str, Any]]:
    folder = resources.files("pipelinejobs.schemas")
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            out[entry.name[: -len(".json")]] = json.loads(entry.read_text(encoding="utf-8"))
    return out


@cache
def schema_documents() -> dict[str, dict[str, Any]]:
    """Every schema by short name (its file name without ``.json``)."""
    return _schema_files()


@cache
def registry() -> Registry:
    """The registry of every schema, keyed by ``$id``; built once per process."""
    resources_ = []
    for name, doc in schema_documents().items():
        expected = BASE_URI + name + ".json"
        if doc.get("$id") != expected:
            raise RuntimeError(f"schemas/{name}.json has $id {doc.get('$id')!r}, want {expected!r}")
        resources_.append((expected, Resource.from_contents(doc, default_specification=DRAFT7)))
    return Registry().with_resources(resources_).crawl()


#: Marks where a schema file was inlined, so error messages still name it.
INLINED = "x-inlined-from"


def _self_contained(doc: Any) -> bool:
    """True when a schema has no ``$ref`` of its own (safe to copy into another)."""
    if isinstance(doc, dict):
        return "$ref" not in doc and all(_self_contained(v) for v in doc.values())
    if isinstance(doc, list):
        return all(_self_contained(v) for v in doc)
    return True


def inline_leaves(node: Any, docs: dict[str, dict[str, Any]]) -> Any:
    """``node`` with every ``{"$ref": "<file>.json"}`` to a self-contained schema file
    replaced by that file's content.

    Resolving a ``$ref`` through the registry on every validation is a large part of
    validating a small message (the typed-UUID and name schemas are referenced from
    every event); the leaves never change, so they are copied in once. References
    with a fragment, or to schemas that refer further, stay references.
    """
    if isinstance(node, list):
        return [inline_leaves(v, docs) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.endswith(".json") and "/" not in ref and len(node) == 1:
        target = docs.get(ref.removesuffix(".json"))
        if target is not None and _self_contained(target):
            body = {k: v for k, v in target.items() if k not in ("$id", "$schema")}
            return {**body, INLINED: ref.removesuffix(".json")}
    return {k: inline_leaves(v, docs) for k, v in node.items()}


_DOLLAR = re.compile(r"(?<!\\)\$")


@cache
def _ecma(pattern: str) -> re.Pattern[str]:
    """``pattern`` as ECMA-262 (JSON Schema's regex dialect) reads ``$``: the end of
    the text. Python's ``$`` also matches before a final newline, which would let
    ``"...\n"`` through a pattern that a client, or the OpenAPI document, says refuses it."""
    return re.compile(_DOLLAR.sub(r"\\Z", pattern))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not _ecma(pattern).search(instance):
        yield JsonSchemaError(f"{instance!r} does not match {pattern!r}")


#: The validator classes used here: the drafts with ECMA-262's ``$`` in ``pattern``.
Draft7 = validators.extend(Draft7Validator, {"pattern": _pattern})
Draft202012 = validators.extend(Draft202012Validator, {"pattern": _pattern})


@cache
def validator(name: str) -> Draft7Validator:
    """A ready validator for the schema ``name`` (e.g. ``pipelinejob_manager_event``)."""
    docs = schema_documents()
    if name not in docs:
        raise KeyError(f"no schema named {name!r}; known: {', '.join(sorted(docs))}")
    schema = inline_leaves(docs[name], docs)
    made: Draft7Validator = Draft7(schema, registry=registry(), format_checker=FormatChecker())
    return made


class _Pattern:
    """``pattern`` for the compiled validator, read as :func:`_pattern` reads it."""

    def __init__(self, parent: Any, value: str, path: Any) -> None:
        self.search = _ecma(value).search
        self.value = value

    def validate(self, instance: Any) -> None:
        if isinstance(instance, str) and not self.search(instance):
            raise ValueError(f"{instance!r} does not match {self.value!r}")


@cache
def _formats() -> dict[str, Any]:
    """Every ``format`` the schemas use, checked by jsonschema's own checker (a format
    it cannot check, it passes — as :func:`validator` does)."""
    checker = FormatChecker()
    used = set(re.findall(r'"format":\s*"([^"]+)"', json.dumps(schema_documents())))
    return {name: (lambda value, name=name: checker.conforms(value, name)) for name in used}


@cache
def _compiled_registry() -> Any:
    """Every schema for ``jsonschema-rs``, keyed by ``$id``; built once per process."""
    docs = schema_documents()
    return jsonschema_rs.Registry([(BASE_URI + n + ".json", doc) for n, doc in docs.items()])


@cache
def compiled(name: str) -> Any:
    """The ``jsonschema-rs`` validator of schema ``name``; None when it cannot be built
    (that schema is then checked by ``jsonschema`` alone)."""
    docs = schema_documents()
    try:
        return jsonschema_rs.Draft7Validator(
            inline_leaves(docs[name], docs),
            registry=_compiled_registry(),
            keywords={"pattern": _Pattern},
            formats=_formats(),
            validate_formats=True,
        )
    except Exception:  # noqa: BLE001 - any refusal to compile: the slow path still works
        logging.getLogger("pipelinejobs.validation").warning(
            "schema %s is checked by jsonschema alone (jsonschema-rs refused it)", name
        )
        return None


_CROSSCHECK = os.environ.get("PIPELINEJOBS_VALIDATION_CROSSCHECK") == "1"


def _fast_valid(name: str, instance: Any) -> bool:
    """True when the compiled validator accepts ``instance`` (then so does jsonschema)."""
    fast = compiled(name)
    if fast is None:
        return False
    ok = bool(fast.is_valid(instance))
    if ok and _CROSSCHECK and not validator(name).is_valid(instance):
        raise AssertionError(
            f"jsonschema-rs accepts what jsonschema refuses ({name}): {instance!r}"
        )
    return ok


def title(name: str) -> str:
    """The human title of a schema (``PipelinesDefinition``), or its name if it has none."""
    return str(schema_documents()[name].get("title", name))


def validate(name: str, instance: Any) -> None:
    """Raise :class:`SchemaValidationError` unless ``instance`` is valid under ``name``."""
    if _fast_valid(name, instance):
        return
    v = validator(name)
    errors = sorted(v.iter_errors(instance), key=lambda e: (_path_key(e), relevance(e)))
    if not errors:
        return
    first = errors[0]
    path = format_path(first)
    reason = describe(first)
    schema_title = title(name)
    where = path or "(the message itself)"
    raise SchemaValidationError(
        f"{schema_title}: {where}: {reason}",
        schema=schema_title,
        path=path,
        errors=[f"{format_path(e) or '(root)'}: {describe(e)}" for e in errors],
    )


def is_valid(name: str, instance: Any) -> bool:
    """True when ``instance`` is valid under ``name``."""
    return _fast_valid(name, instance) or validator(name).is_valid(instance)


def _path_key(error: JsonSchemaError) -> list[tuple[int, int | str]]:
    """Sort key putting ``components/2`` before ``components/10``."""
    return [(0, p) if isinstance(p, int) else (1, str(p)) for p in error.absolute_path]


def format_path(error: JsonSchemaError) -> str:
    """``components/0/repo`` style path of the failing field ('' for the root)."""
    return "/".join(str(p) for p in error.absolute_path)


def _alternative_name(subschema: Any, index: int) -> str:
    if isinstance(subschema, dict):
        if isinstance(subschema.get(INLINED), str):
            return str(subschema[INLINED])
        ref = subschema.get("$ref")
        if isinstance(ref, str):
            return ref.rsplit("/", 1)[-1].removesuffix(".json")
        if "title" in subschema:
            return str(subschema["title"])
    return f"alternative {index}"


def describe(error: JsonSchemaError) -> str:
    """A one-line reason; for anyOf/oneOf, every alternative and why it failed."""
    if error.validator in ("anyOf", "oneOf") and isinstance(error.validator_value, list):
        names = [_alternative_name(s, i) for i, s in enumerate(error.validator_value)]
        reasons: dict[int, list[str]] = {}
        for sub in error.context or ():
            idx = sub.schema_path[0] if sub.schema_path else None
            if isinstance(idx, int):
                sub_path = "/".join(str(p) for p in sub.relative_path)
                text = sub.message if not sub_path else f"{sub_path}: {sub.message}"
                reasons.setdefault(idx, []).append(text)
        parts = []
        for i, n in enumerate(names):
            why = "; ".join(reasons.get(i, [])) or "does not match"
            parts.append(f"{n} ({why})")
        kind = "none" if error.validator == "anyOf" else "not exactly one"
        return f"matches {kind} of the allowed forms: " + ", ".join(parts)
    return error.message
