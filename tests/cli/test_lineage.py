"""``pipelinejobs lineage``: a lineage graph printed as a tree."""

from __future__ import annotations

from typing import Any

import pytest

from pipelinejobs.cli import main
from pipelinejobs.cli.lineage import render

JOB_A, JOB_B = "107aaaaa-0000-5000-8000-000000000000", "107bbbbb-0000-5000-8000-000000000000"
FILE_A, FILE_B = "105aaaaa-0000-5000-8000-000000000000", "105bbbbb-0000-5000-8000-000000000000"
PIPELINE = "106aaaaa-0000-5000-8000-000000000000"


def graph(direction: str = "both", **extra: Any) -> dict[str, Any]:
    """B (derived from A's file) and what lies around it, as the API answers."""
    return {
        "root": {"id": JOB_B, "kind": "job"},
        "direction": direction,
        "depth": 3,
        "nodes": [
            {"id": JOB_B, "kind": "job", "state": "FINISHED", "depth": 0},
            {"id": PIPELINE, "kind": "pipeline", "name": "Step B", "depth": 1, "direction": "up"},
            {
                "id": "sample.tacc.1",
                "kind": "linkage",
                "type": "sample",
                "depth": 1,
                "direction": "up",
            },
            {"id": FILE_A, "kind": "file", "path": "/p/a.csv", "depth": 1, "direction": "up"},
            {
                "id": JOB_A,
                "kind": "job",
                "state": "FINISHED\x1b[31m",
                "depth": 2,
                "direction": "up",
                "more": True,
            },
            {"id": FILE_B, "kind": "file", "path": "/p/b.png", "depth": 1, "direction": "down"},
        ],
        "edges": [
            {"from": JOB_B, "to": PIPELINE, "type": "generated_by"},
            {"from": JOB_B, "to": "sample.tacc.1", "type": "child_of"},
            {"from": JOB_B, "to": FILE_A, "type": "derived_from"},
            {"from": FILE_A, "to": JOB_A, "type": "generated_by"},
            {"from": FILE_A, "to": "sample.tacc.1", "type": "child_of"},
            {"from": FILE_B, "to": JOB_B, "type": "generated_by"},
        ],
        "truncated": True,
        "reasons": ["depth 3 reached: nodes marked more have neighbours further up"],
        "limits": {"max_depth": 10, "max_nodes": 500},
        **extra,
    }


def test_a_graph_is_printed_as_a_tree_up_and_down() -> None:
    assert render(graph()) == [
        f"job {JOB_B}  FINISHED",
        "├── up",
        f"│   ├── generated_by  pipeline {PIPELINE}  Step B",
        "│   ├── child_of  linkage sample.tacc.1 (sample)",
        f"│   └── derived_from  file {FILE_A}  /p/a.csv",
        f"│       ├── generated_by  job {JOB_A}  FINISHED\\x1b[31m  …",
        "│       └── child_of  linkage sample.tacc.1 (sample)  (above)",
        "└── down",
        f"    └── generated_by  file {FILE_B}  /p/b.png",
        "(truncated: depth 3 reached: nodes marked more have neighbours further up)",
    ]


def test_one_direction_prints_one_half() -> None:
    lines = render(graph("down", truncated=False, reasons=[]))
    assert lines == [
        f"job {JOB_B}  FINISHED",
        "└── down",
        f"    └── generated_by  file {FILE_B}  /p/b.png",
    ]


def test_a_uuid_that_is_neither_a_job_nor_a_file_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["lineage", PIPELINE, "--url", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err == (
        f"pipelinejobs: error: {PIPELINE!r} is not a job (107…) or file (105…) uuid\n"
    )
