"""What the CLI prints for people: fields, tables, plain help, escaped control characters."""

from __future__ import annotations

from pipelinejobs.cli.output import fields, flatten, plain, printable, table


def test_a_result_flattens_to_aligned_key_value_lines() -> None:
    result = {
        "uuid": "107e",
        "launched": True,
        "launch": {"backend": "inline", "outputs": ["a.txt", "b.txt"], "callbacks": []},
        "stopping": None,
        "rows": [{"a": 1}],
    }
    assert fields(flatten(result)) == [
        "uuid:             107e",
        "launched:         true",
        "launch.backend:   inline",
        "launch.outputs:   a.txt, b.txt",
        "launch.callbacks: -",
        "stopping:         null",
        'rows:             [{"a": 1}]',
    ]


def test_a_table_pads_all_but_the_last_column() -> None:
    assert table(["ID", "STATE"], [["a", "FINISHED"], ["bbbb", None]]) == [
        "ID    STATE",
        "a     FINISHED",
        "bbbb  null",
    ]


def test_data_cannot_drive_the_terminal() -> None:
    assert printable("red \x1b[31m\n") == "red \\x1b[31m\\x0a"
    assert fields([("k\x1b", "v")]) == ["k\\x1b: v"]
    assert table(["A"], [["\x9b2J"]])[1] == "\\x9b2J"


def test_help_text_from_a_docstring_is_plain() -> None:
    doc = """The ``pipelinejobs`` command, see
    :mod:`pipelinejobs.cli.remote` and :func:`~x.y`."""
    assert plain(doc) == "The pipelinejobs command, see pipelinejobs.cli.remote and x.y."
