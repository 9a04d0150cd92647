"""LocalStorage.count_files: the indexer's total, by the walk's rules, and stoppable."""

from __future__ import annotations

import os
from pathlib import Path

from pipelinejobs.adapters.storage import LocalStorage

ARCHIVE = "/products/v2/abc"


def tree(root: Path, outside: Path) -> LocalStorage:
    storage = LocalStorage(root, "data-sd2e-community")
    base = storage.makedirs(ARCHIVE)
    for i in range(25):
        folder = base / f"d{i % 4}" / ("deep" if i % 3 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.txt").write_text("x")
    (outside / "elsewhere.txt").write_text("not ours")
    os.symlink(outside, base / "linked-dir")
    os.symlink(outside / "elsewhere.txt", base / "linked-file.txt")
    (base / "empty").mkdir()
    return storage


def test_it_counts_what_the_walk_lists(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    storage = tree(tmp_path / "root", tmp_path / "outside")
    assert storage.count_files(ARCHIVE) == len(list(storage.walk(ARCHIVE))) == 25


def test_a_missing_archive_path_has_no_files(tmp_path: Path) -> None:
    assert LocalStorage(tmp_path, "s").count_files("/products/v2/none") == 0


def test_it_stops_when_asked(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    storage = tree(tmp_path / "root", tmp_path / "outside")
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 2

    assert storage.count_files(ARCHIVE, stop) is None
    assert len(asked) == 3
