"""The boundary: strict JSON in, or a 400 that names what is wrong.

Everything that enters from outside — an HTTP body, a URL parameter, a message any
caller submits — passes through here before anything is stored or published. Python's
``json`` module is lenient where the store and the other end are not: it takes
``NaN`` and ``Infinity`` (SQLite's JSON functions then refuse the stored record, and
every later read of it), lone surrogates (which cannot be encoded to UTF-8 at all),
integers of any size (MongoDB and SQLite hold 64 bits), duplicate keys (the last one
silently wins) and nesting as deep as the C stack lets it (then a ``RecursionError``).
Each of those is refused here, naming the field's path (``data/x``) the way schema
errors do, so a caller can fix the request and nothing half-accepted stays behind.

The rules (RFC 8259 plus what storage needs):

* the text is UTF-8, without a byte order mark;
* numbers are finite; integers lie in the signed 64-bit range;
* strings and keys are valid Unicode (no lone surrogates); keys are at most
  :data:`MAX_KEY` characters and hold no NUL (BSON keys are C strings);
* no object repeats a key;
* nesting is at most ``max_depth`` containers deep (``{}`` is depth 1) — measured
  on the raw text, without recursion, before the parser sees it.

:func:`decode` parses and checks a body; :func:`check` checks a value built in code
(a message an actor or the CLI submits); :func:`check_params` checks URL parameters.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import re2

from pipelinejobs.errors import MalformedMessage, ValidationError

DEFAULT_MAX_DEPTH = 64
MAX_KEY = 1024
#: Longest URL parameter value; a URL this long is already an error of the caller's.
MAX_PARAM = 8192
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
BOM = b"\xef\xbb\xbf"

_SURROGATE = re.compile("[\ud800-\udfff]")
#: What a text must hold for a scalar or a key in it to break a rule: a ``\\u``
#: escape of a surrogate or of NUL, 19 digits in a row (past 64 bits, or a float
#: that overflows), a three-digit exponent, or NaN/Infinity. Short fixed patterns
#: with no repetition of repetition, so the search is linear. (Keys over MAX_KEY and
#: repeated keys are marked by the parser's object hook instead.)
#: RE2: Python's ``re`` tries every alternative at every position (14 ms for 100 kB);
#: RE2 runs them as one automaton (0.4 ms).
_SCALAR_MARKS = re2.compile(r"\\u[dD][89a-fA-F]|\\u0000|[0-9]{19}|[eE][-+]?[0-9]{3}|NaN|Infinity")


class _Constant:
    """What ``NaN``/``Infinity``/``-Infinity`` parse to: a marker the walk reports
    with its path (the parser's hook does not know where it is)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Repeated(dict[str, Any]):
    """An object that named a key twice; reported with its path by the walk."""

    repeated: str = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    repeated = _Repeated(obj)
    for key, _ in pairs:
        if key in seen:
            repeated.repeated = key
            break
        seen.add(key)
    return repeated


def _path(node: tuple[Any, ...] | None) -> str:
    """``data/x/0`` from the walk's linked path (parent, key)."""
    parts: list[str] = []
    while node is not None:
        node, key = node
        parts.append(str(key))
    return "/".join(reversed(parts))


def _at(node: tuple[Any, ...] | None, where: str) -> str:
    path = _path(node)
    if where and path:
        return f"{where}/{path}"
    return where or path


def decode(raw: bytes | str, *, max_depth: int = DEFAULT_MAX_DEPTH, where: str = "") -> Any:
    """Parse a JSON text under the module's rules; raise a 400 error naming the path.

    The C parser does the parsing; the rules are then checked by :func:`check`'s
    walk, but only where the text could break one. What breaking a rule needs leaves
    a mark: on the raw text, found by ``re`` at C speed in one linear pass (a lone
    surrogate or a NUL key needs a ``\\u`` escape, a number out of range 19 digits or a
    three-digit exponent, too deep a body more brackets than the limit), or on an
    object as the parser builds it (a repeated or overlong key). So a typical message
    skips the walk, and a large one walks its containers only. A body nested deeper
    than the parser's own recursion limit is refused from its ``RecursionError``: the
    parser stops cleanly there, and nothing of ours recurses.
    """
    if isinstance(raw, bytes):
        if raw.startswith(BOM):
            raise MalformedMessage(
                "the body starts with a byte order mark; send UTF-8 JSON without one",
                path=where,
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage(
                f"the body is not UTF-8: invalid byte {raw[exc.start]:#04x} at offset {exc.start}",
                path=where,
            ) from None
    else:
        text = raw
    marked: list[dict[str, Any]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = _pairs(items)
        if type(obj) is _Repeated or (obj and max(map(len, obj)) > MAX_KEY):
            marked.append(obj)
        return obj

    try:
        value = json.loads(text, parse_constant=_Constant, object_pairs_hook=pairs)
    except RecursionError:
        raise MalformedMessage(
            f"the JSON nests deeper than the parser goes; at most {max_depth} levels are allowed",
            path=where,
            max_depth=max_depth,
        ) from None
    except ValueError as exc:  # JSONDecodeError, or an integer of thousands of digits
        raise MalformedMessage(f"the body is not valid JSON: {exc}", path=where) from None
    scalars = bool(marked) or bool(_SCALAR_MARKS.search(text))
    containers = scalars or text.count("{") + text.count("[") > max_depth
    if containers:
        check(value, max_depth=max_depth, where=where, scalars=scalars)
    return value


def check(
    value: Any, *, max_depth: int = DEFAULT_MAX_DEPTH, where: str = "", scalars: bool = True
) -> None:
    """Refuse a value that could not be stored or sent as strict JSON (see the module
    docstring); ``where`` prefixes the paths named in errors. Walks with its own
    stack, so depth is checked before it could cost anything. ``scalars=False`` (a
    decoded text with no mark of a bad scalar or key) walks the containers only."""
    stack: list[tuple[Any, int, tuple[Any, ...] | None]] = [(value, 0, None)]
    while stack:
        item, depth, node = stack.pop()
        kind = type(item)
        if not scalars and kind is not dict and kind is not list:
            continue
        if kind is str:
            if _SURROGATE.search(item):
                raise ValidationError(
                    f"{_at(node, where) or 'the value'}: the string holds a lone surrogate "
                    f"({item.encode('utf-8', 'backslashreplace')[:40]!r}); it is not Unicode",
                    path=_at(node, where),
                )
        elif kind is int:
            if not INT_MIN <= item <= INT_MAX:
                raise ValidationError(
                    f"{_at(node, where) or 'the value'}: integer out of range; integers "
                    f"must lie between {INT_MIN} and {INT_MAX}",
                    path=_at(node, where),
                )
        elif kind is float:
            if not math.isfinite(item):
                raise ValidationError(
                    f"{_at(node, where) or 'the value'}: {item} is not a finite number "
                    f"(the exponent is too large); JSON numbers must be finite",
                    path=_at(node, where),
                )
        elif kind is dict or kind is _Repeated:
            depth += 1
            _container(item, depth, node, max_depth, where)
            if kind is _Repeated:
                raise MalformedMessage(
                    f"{_at(node, where) or 'the body'}: key {item.repeated!r} appears more "
                    f"than once in one object",
                    path=_at((node, item.repeated), where),
                )
            if scalars:
                for key, sub in item.items():
                    _key(key, node, where)
                    stack.append((sub, depth, (node, key)))
            else:
                stack.extend(
                    (sub, depth, (node, key))
                    for key, sub in item.items()
                    if type(sub) is dict or type(sub) is list
                )
        elif kind is list:
            depth += 1
            _container(item, depth, node, max_depth, where)
            stack.extend(
                (sub, depth, (node, i))
                for i, sub in enumerate(item)
                if scalars or type(sub) is dict or type(sub) is list
            )
        elif kind is _Constant:
            raise MalformedMessage(
                f"{_at(node, where) or 'the value'}: {item.text} is not JSON (RFC 8259 has "
                f"no NaN or Infinity); send a finite number or null",
                path=_at(node, where),
            )
        elif item is None or kind is bool:
            continue
        else:
            raise ValidationError(
                f"{_at(node, where) or 'the value'}: a {kind.__name__} is not a JSON value",
                path=_at(node, where),
            )


def _container(item: Any, depth: int, node: tuple[Any, ...] | None, limit: int, where: str) -> None:
    if depth > limit:
        raise MalformedMessage(
            f"{_at(node, where) or 'the body'}: nested {depth} levels deep; at most "
            f"{limit} are allowed",
            path=_at(node, where),
            max_depth=limit,
        )


def _key(key: Any, node: tuple[Any, ...] | None, where: str) -> None:
    if type(key) is not str:
        raise ValidationError(
            f"{_at(node, where) or 'the object'}: key {key!r} is not a string",
            path=_at(node, where),
        )
    if len(key) > MAX_KEY or "\x00" in key or _SURROGATE.search(key):
        shown = key[:40].encode("utf-8", "backslashreplace")
        raise ValidationError(
            f"{_at(node, where) or 'the object'}: key {shown!r}... is not allowed: keys are "
            f"Unicode text of at most {MAX_KEY} characters without NUL",
            path=_at(node, where),
        )


def check_params(
    args: Mapping[str, Any] | Any,
    *,
    multi: Iterable[str] | None = (),
) -> dict[str, str]:
    """URL parameters as a plain dict, refusing a name given twice (unless it is in
    ``multi``; ``None``: any may repeat), NUL anywhere, lone surrogates and values
    over :data:`MAX_PARAM`.

    ``args`` is a werkzeug ``MultiDict`` (``getlist``) or a plain mapping. A repeated
    parameter is refused rather than one copy silently winning: ``?uuid=a&uuid=b``
    cannot be told apart from a forged request otherwise.
    """
    allowed = None if multi is None else frozenset(multi)
    out: dict[str, str] = {}
    names = list(args.keys())
    for name in names:
        values = args.getlist(name) if hasattr(args, "getlist") else [args[name]]
        if len(values) > 1 and allowed is not None and name not in allowed:
            raise ValidationError(
                f"URL parameter {name!r} is given {len(values)} times; give it once",
                path=name,
            )
        for value in values:
            for text, what in ((name, "name"), (str(value), "value")):
                if "\x00" in text or _SURROGATE.search(text):
                    raise ValidationError(
                        f"URL parameter {name!r}: its {what} holds a NUL or invalid character",
                        path=name,
                    )
            if len(str(value)) > MAX_PARAM:
                raise ValidationError(
                    f"URL parameter {name!r} is over {MAX_PARAM} characters", path=name
                )
        out[name] = str(values[0])
    return out
