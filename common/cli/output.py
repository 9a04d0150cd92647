"""What the CLI prints for people: ``key: value`` lines, short tables, plain help.

Results go to stdout, as a person reads them; ``--json`` prints the gateway's answer
as it came instead, for scripts. Anything a record says is printed through
:func:`printable`, so data (user input) cannot drive the terminal.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

__all__ = ["fields", "flatten", "plain", "printable", "show", "table", "text", "write_json"]


def printable(value: Any, limit: int = 80) -> str:
    """``value`` as one line safe for a terminal: job data is user input, and a
    control character in it (an escape sequence) must not reach the terminal."""
    text = str(value)
    out = "".join(
        ch if ch.isprintable() and ch not in "\x1b\x9b" else f"\\x{ord(ch):02x}" for ch in text
    )
    return out if len(out) <= limit else out[: limit - 1] + "…"


#: How long one value may be before it is cut (a result's values are never cut).
WIDE = 100_000


def text(value: Any, limit: int = WIDE) -> str:
    """A scalar as a person reads it: JSON's spelling of true, false and null, numbers
    and strings as they are; anything else as compact JSON."""
    if isinstance(value, str):
        return printable(value, limit)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return printable(json.dumps(value, separators=(", ", ": ")), limit)


def flatten(value: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A result's fields as ``(key, value)`` pairs: nested objects as dotted keys
    (``launch.backend``), lists of scalars joined by commas, empty lists as ``-``."""
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            pairs.extend(flatten(item, f"{name}."))
        elif isinstance(item, list) and all(not isinstance(v, Mapping | list) for v in item):
            pairs.append((name, ", ".join(text(v) for v in item) or "-"))
        else:
            pairs.append((name, text(item)))
    return pairs


def fields(pairs: Iterable[tuple[str, Any]]) -> list[str]:
    """``key: value`` lines, the values aligned."""
    rows = [(printable(k, 40), v if isinstance(v, str) else text(v)) for k, v in pairs]
    width = max((len(k) for k, _ in rows), default=0) + 1
    return [f"{k + ':':<{width}} {v}".rstrip() for k, v in rows]


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A table with a header row, columns two spaces apart, the last one not padded."""
    cells = [[printable(c if isinstance(c, str) else text(c), 120) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *cells]
    ]


def show(lines: Iterable[str], out: IO[str] | None = None) -> None:
    """Print ``lines`` on stdout."""
    stream = out or sys.stdout
    for line in lines:
        stream.write(line + "\n")
    stream.flush()


def write_json(answer: Any, out: IO[str] | None = None) -> None:
    """The gateway's answer as it came (``--json``)."""
    stream = out or sys.stdout
    stream.write(json.dumps(answer, indent=2) + "\n")
    stream.flush()


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(doc: str) -> str:
    """A docstring as help text: reStructuredText's roles (``:mod:`x```) and
    literals (````x````) turned into the plain words, paragraphs joined."""
    out = _LITERAL.sub(r"\1", _ROLE.sub(r"\1", doc))
    return " ".join(out.split())
