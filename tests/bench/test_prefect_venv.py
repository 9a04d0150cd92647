"""bench/_prefect_venv.py reads Prefect's requirements from its wheel and drops the one
pin the registry cannot meet; these checks need no Prefect and no network."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _prefect_venv  # noqa: E402

METADATA = """Metadata-Version: 2.4
Name: prefect
Version: 3.9.1
Requires-Dist: anyio<5.0.0,>=4.4.0
Requires-Dist: certifi>=2026.10.19
Requires-Dist: pendulum<4,>=3.1.0; python_version < '3.13'
Requires-Dist: prefect-aws>=0.5.8; extra == 'aws'

Prefect's description.
"""


def wheel(tmp_path: Path, metadata: str = METADATA) -> Path:
    path = tmp_path / "prefect-3.9.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("prefect-3.9.1.dist-info/METADATA", metadata)
    return path


def test_requirements_drop_the_certifi_pin_and_the_extras(tmp_path: Path) -> None:
    assert _prefect_venv.requirements(wheel(tmp_path)) == [
        "anyio<5.0.0,>=4.4.0",
        "certifi",
        "pendulum<4,>=3.1.0; python_version < '3.13'",
    ]


def test_a_pin_dropped_keeps_its_marker(tmp_path: Path) -> None:
    metadata = "Requires-Dist: certifi>=2026.10.19; python_version >= '3.11'\n"
    assert _prefect_venv.requirements(wheel(tmp_path, metadata)) == [
        "certifi; python_version >= '3.11'"
    ]


def test_an_unfinished_venv_is_not_used(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "prefect").write_text("#!/bin/sh\n")
    with pytest.raises(_prefect_venv.PrefectUnavailable, match="--setup"):
        _prefect_venv.executable(tmp_path)  # no stamp: the install stopped half-way
    _prefect_venv.stamp(tmp_path).write_text("prefect==3.9.1\n")
    assert _prefect_venv.executable(tmp_path) == tmp_path / "bin" / "prefect"
