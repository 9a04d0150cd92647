"""The boundary decoder: strict JSON, each refusal naming its path, nothing recursive."""

from __future__ import annotations

import sys

import pytest
from werkzeug.datastructures import MultiDict

from pipelinejobs.access import boundary
from pipelinejobs.errors import PipelineJobsError, ValidationError

REFUSED = [
    (b'{"a":NaN}', "a", "NaN"),
    (b'{"a":[0,Infinity]}', "a/1", "Infinity"),
    (b'{"a":{"b":-Infinity}}', "a/b", "-Infinity"),
    (b'{"a":1e400}', "a", "finite"),
    (b'{"a":9223372036854775808}', "a", "out of range"),
    (b'{"a":-9223372036854775809}', "a", "out of range"),
    (b'{"a":"\\ud800"}', "a", "surrogate"),
    (b'{"a":["ok","\\udfff"]}', "a/1", "surrogate"),
    (b'{"\\ud800":1}', "", "key"),
    (b'{"a":{"x\\u0000":1}}', "a", "NUL"),
    (b'{"a":1,"a":2}', "a", "more than once"),
    (b'{"a":[{"b":1,"c":2,"b":3}]}', "a/0/b", "more than once"),
    (b"\xef\xbb\xbf{}", "", "byte order mark"),
    (b'{"a":"\xc0\xaf"}', "", "not UTF-8"),
    (b'{"a":"\xed\xa0\x80"}', "", "not UTF-8"),
    ('{"a":1}'.encode("utf-16"), "", "not UTF-8"),
    (b'{"a":1', "", "not valid JSON"),
    (b"{'a':1}", "", "not valid JSON"),
    (b"[" * 65 + b"]" * 65, "0" + "/0" * 63, "65 levels"),
    (b"[" * 100_000 + b"]" * 100_000, "", "deeper than the parser goes"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "", "deeper than the parser goes"),
]


@pytest.mark.parametrize(("raw", "path", "says"), REFUSED, ids=[r[2] for r in REFUSED])
def test_refused_with_its_path(raw: bytes, path: str, says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        boundary.decode(raw)
    assert caught.value.detail.get("path", "") == path
    assert says in caught.value.message


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 64 + b"]" * 64,
        b'{"a":"' + b"[" * 500 + b'"}',  # brackets inside strings do not count
        b'{"a":"\\"[[[[\\\\"}',
        b'{"a":"\\ud83d\\ude00","\\u00e9":"\xc3\xa9"}',  # a valid pair; a non-ASCII key
        b'{"a":9223372036854775807,"b":-9223372036854775808,"c":1.5e300}',
        b'{"a":"x\\u0000y"}',  # NUL in a value is text; only keys forbid it
        b"null",
        b"[]",
    ],
)
def test_accepted(raw: bytes) -> None:
    boundary.decode(raw)


@pytest.mark.timeout(60)  # a hang guard, not a speed check: the scan is linear
def test_depth_is_measured_without_recursion() -> None:
    """Far past the interpreter's recursion limit: a body of 1 MB."""
    raw = b"[" * 500_000 + b"]" * 500_000
    limit = sys.getrecursionlimit()
    with pytest.raises(ValidationError, match="at most 64 levels"):
        boundary.decode(raw)
    assert sys.getrecursionlimit() == limit


@pytest.mark.timeout(60)  # a hang guard: with Python's re this input takes hours
def test_a_pathological_string_does_not_make_the_scan_quadratic() -> None:
    """``re`` retries an unterminated string from every quote; the scan uses RE2."""
    raw = b"[" * 70 + b'"' + b'\\"' * 200_000
    with pytest.raises(ValidationError):
        boundary.decode(raw)


def test_check_refuses_values_built_in_code() -> None:
    with pytest.raises(ValidationError, match="not a JSON value") as caught:
        boundary.check({"a": {"b": (1, 2)}})
    assert caught.value.detail["path"] == "a/b"
    with pytest.raises(ValidationError) as caught:
        boundary.check({"a": float("nan")}, where="-m")
    assert caught.value.detail["path"] == "-m/a"


def test_max_depth_is_a_setting() -> None:
    boundary.decode(b"[[[]]]", max_depth=3)
    with pytest.raises(ValidationError, match="at most 2"):
        boundary.decode(b"[[[]]]", max_depth=2)


@pytest.mark.parametrize(
    ("args", "path", "says"),
    [
        (MultiDict([("uuid", "a"), ("uuid", "b")]), "uuid", "2 times"),
        (MultiDict([("uuid", "a\x00")]), "uuid", "NUL"),
        (MultiDict([("u\x00", "a")]), "u\x00", "NUL"),
        (MultiDict([("p", "x" * 9000)]), "p", "over"),
    ],
)
def test_params_refused(args: MultiDict, path: str, says: str) -> None:
    with pytest.raises(PipelineJobsError, match=says) as caught:
        boundary.check_params(args)
    assert caught.value.detail["path"] == path


def test_params_may_repeat_where_the_route_says() -> None:
    args = MultiDict([("state", "CREATED"), ("state", "RUNNING"), ("limit", "5")])
    assert boundary.check_params(args, multi=["state"]) == {"state": "CREATED", "limit": "5"}
    assert boundary.check_params(args, multi=None)["limit"] == "5"
