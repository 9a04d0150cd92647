"""Strict JSON into the stores (common/store/codec.py): NaN, Infinity and lone
surrogates are refused before anything is written, on every backend; stored text that
is not a well-formed record is a CorruptDocument naming it."""

from __future__ import annotations

from typing import Any

import pytest

from pipelinejobs.adapters.store import codec
from pipelinejobs.adapters.store.base import COLLECTIONS, Store
from pipelinejobs.adapters.store.sqlite_query import dumps as sqlite_dumps
from pipelinejobs.errors import CorruptDocument, StoreError, UnstorableDocument, http_status

JOBS = COLLECTIONS["jobs"]

#: Values no JSON reader takes back, or that cannot be encoded as UTF-8 at all.
POISON: dict[str, Any] = {
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "lone surrogate": "\ud800",
    "surrogate in a key": {"\udfff": 1},
    "nested nan": {"a": [1, {"b": float("nan")}]},
}


@pytest.mark.parametrize("value", POISON.values(), ids=POISON.keys())
def test_dumps_refuses_what_is_not_strict_json(value: Any) -> None:
    with pytest.raises(UnstorableDocument) as refused:
        codec.dumps({"uuid": "j1", "x": value}, "jobs", "j1")
    assert "jobs record j1 cannot be stored as strict JSON" in refused.value.message
    assert refused.value.detail == {"collection": "jobs", "key": "j1"}
    assert isinstance(refused.value, StoreError) and http_status(refused.value) == 500


def test_dumps_says_why() -> None:
    with pytest.raises(UnstorableDocument, match="NaN and Infinity are not JSON"):
        codec.dumps(float("nan"))
    with pytest.raises(UnstorableDocument, match="lone surrogate"):
        codec.dumps("\ud800")
    with pytest.raises(UnstorableDocument, match="not JSON serializable"):
        codec.dumps({1, 2})


def test_dumps_writes_compact_unicode_and_is_the_one_sqlite_uses() -> None:
    assert codec.dumps({"a": [1, 2.5, None], "t": "漢字 🚀"}) == '{"a":[1,2.5,null],"t":"漢字 🚀"}'
    assert sqlite_dumps is codec.dumps


@pytest.mark.parametrize("value", POISON.values(), ids=POISON.keys())
def test_no_backend_writes_a_poisoned_document(store: Store, value: Any) -> None:
    with pytest.raises(UnstorableDocument):
        store.insert("jobs", {"uuid": "j1", "data": value})
    assert store.get("jobs", "j1") is None
    with pytest.raises(UnstorableDocument):
        store.put_many("jobs", [{"uuid": "j2"}, {"uuid": "j3", "data": value}])
    assert store.count("jobs") == 0  # the whole batch, not the documents before it
    store.insert("jobs", {"uuid": "j4", "state": "CREATED"})
    with pytest.raises(UnstorableDocument):
        store.update("jobs", "j4", version=0, set={"data": value})
    with pytest.raises(UnstorableDocument):
        store.update("jobs", "j4", version=0, push={"history": [value]})
    assert store.get("jobs", "j4") == {"uuid": "j4", "state": "CREATED", "version": 0}


STORED: dict[str, bytes | str] = {
    "not json": "not json",
    "nan": '{"uuid":"j1","version":0,"x":NaN}',
    "infinity": '{"uuid":"j1","version":0,"x":-Infinity}',
    "array": "[1, 2]",
    "string": '"j1"',
    "no version": '{"uuid":"j1"}',
    "boolean version": '{"uuid":"j1","version":true}',
    "another key": '{"uuid":"j2","version":0}',
    "no key": '{"version":0}',
    "not utf-8": b'{"uuid":"j1","version":0,"x":"\xff"}',
    "too deep": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("raw", STORED.values(), ids=STORED.keys())
def test_loads_turns_a_bad_record_into_corrupt_document(raw: bytes | str) -> None:
    with pytest.raises(CorruptDocument) as corrupt:
        codec.loads(raw, JOBS, "j1")
    assert (corrupt.value.collection, corrupt.value.key) == ("jobs", "j1")
    assert corrupt.value.message.startswith("jobs record j1 is corrupt: ")
    assert corrupt.value.to_dict()["reason"] == corrupt.value.reason


def test_loads_reads_a_good_record() -> None:
    assert codec.loads(b'{"uuid":"j1","version":3,"t":"\xc3\xa9"}', JOBS, "j1") == {
        "uuid": "j1",
        "version": 3,
        "t": "é",
    }


def test_raw_text_keeps_whatever_is_stored() -> None:
    assert codec.raw_text(b"not \xff json") == "not \ufffd json"
    assert codec.raw_text("not json") == "not json"
    assert codec.raw_text({"x": float("nan")}) == '{"x":NaN}'
    assert codec.raw_text({1: object}).startswith("{")
