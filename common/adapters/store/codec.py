"""Strict JSON into the stores, defensive reading out of them.

Every backend writes only **strict JSON**: no NaN or Infinity (the JSON grammar has
neither, SQLite's JSON functions refuse a document holding one, and a client reading
it back gets text that is not JSON) and only strings that encode as UTF-8 (a lone
surrogate cannot be stored in SQLite at all). :func:`dumps` refuses such a value with
:class:`~pipelinejobs.errors.UnstorableDocument` before anything is written, so one
poisoned value never reaches a record.

Reading is defensive, because a record can still be damaged by hand, by an older
version or by a disk: :func:`loads` and :func:`checked` turn anything that is not a
JSON object with its key and an integer ``version`` into a
:class:`~pipelinejobs.errors.CorruptDocument` naming the collection and key — never a bare
``json``/``sqlite3``/``KeyError`` — so a caller can set that one record aside and
go on with the others. :func:`report_corrupt` logs each such record once per process.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import orjson

from pipelinejobs.adapters.store.base import CollectionSpec, Document
from pipelinejobs.errors import CorruptDocument, UnstorableDocument

log = logging.getLogger("pipelinejobs.store")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: One decoder for every read: the C scanner, with NaN/Infinity refused.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def dumps(value: Any, collection: str | None = None, key: Any = None) -> str:
    """``value`` as compact strict JSON text; UnstorableDocument (naming ``collection``
    and ``key`` when given) if it is not strict JSON."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        if not text.isascii():  # O(1) for the common all-ASCII case
            text.encode("utf-8")
    except UnicodeEncodeError as exc:
        why = "a string holds a lone surrogate, which is not valid Unicode"
        raise UnstorableDocument(
            _unstorable(collection, key, why), collection=collection, key=key
        ) from exc
    except (ValueError, TypeError, RecursionError) as exc:
        why = "NaN and Infinity are not JSON" if "Out of range float" in str(exc) else str(exc)
        raise UnstorableDocument(
            _unstorable(collection, key, why), collection=collection, key=key
        ) from exc
    return text


def _unstorable(collection: str | None, key: Any, why: str) -> str:
    what = f"{collection} record {key}" if collection else "a value"
    return f"{what} cannot be stored as strict JSON: {why}"


def loads(raw: bytes | str, spec: CollectionSpec, key: Any) -> Document:
    """The stored text (or bytes) of record ``key`` as a checked document;
    CorruptDocument if it is not strict JSON or not a well-formed record.

    ``orjson`` reads it (a third of the cost of every read); whatever it refuses —
    strict JSON it cannot hold too (an integer past 64 bits, a lone surrogate's
    escape) as well as what is not JSON — is read again by ``json``, whose answer, a
    value or a refusal, is the one this always gave."""
    try:
        return checked(spec, key, orjson.loads(raw))
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, NaN
        reason = f"its stored text is not strict JSON ({exc})"
        raise CorruptDocument(spec.name, key, reason) from exc
    return checked(spec, key, value)


def checked(spec: CollectionSpec, key: Any, value: Any) -> Document:
    """``value`` if it is a record every caller can rely on: an object holding its key
    (the one it is stored under) and an integer ``version``; else CorruptDocument."""
    if not isinstance(value, dict):
        raise CorruptDocument(spec.name, key, f"it is a {type(value).__name__}, not an object")
    version = value.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CorruptDocument(spec.name, key, "it has no integer 'version'")
    own = value.get(spec.key)
    if own in (None, "") or (key is not None and str(own) != str(key)):
        raise CorruptDocument(spec.name, key, f"its {spec.key!r} is {own!r}, not its key")
    return value


def raw_text(value: Any) -> str:
    """Whatever a backend holds for a record, as text for the quarantine: JSON when
    it can be written as JSON (NaN and all), else its ``repr``."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError):
        return repr(value)


_reported: set[tuple[str, str]] = set()
_reported_lock = threading.Lock()


def report_corrupt(exc: CorruptDocument) -> bool:
    """Log a corrupt record at ERROR the first time this process meets it (a sweep
    meets it every round until it is set aside); True if it was logged now."""
    mark = (exc.collection, str(exc.key))
    with _reported_lock:
        if mark in _reported:
            return False
        _reported.add(mark)
    log.error("%s (reported once per process)", exc.message)
    return True


def set_aside(store: Any, exc: CorruptDocument) -> bool:
    """Move the corrupt record ``exc`` names to ``store``'s quarantine (reporting it
    once); True if this call moved it (False: it was gone already)."""
    report_corrupt(exc)
    moved = bool(store.quarantine(exc.collection, exc.key, exc.reason))
    if moved:
        log.warning(
            "%s record %s moved to the quarantine (%s); `pipelinejobs quarantine` lists it",
            exc.collection,
            exc.key,
            exc.reason,
        )
    return moved
