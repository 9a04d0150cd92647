"""LocalStorage: archive paths confined to the storage root, streamed listings that do
not follow symlinks, and outputs that cannot be written outside their archive path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.adapters import storage as storage_module
from pipelinejobs.adapters.storage import FileEntry, LocalStorage
from pipelinejobs.errors import ValidationError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("secret")
    return folder


@pytest.fixture
def storage(root: Path) -> LocalStorage:
    return LocalStorage(root, "data-sd2e-community")


def listing(storage: LocalStorage, archive_path: str) -> dict[str, int]:
    return {entry.relative: entry.size for entry in storage.walk(archive_path)}


# -- normalise -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/products/v2/a", "/products/v2/a"),
        ("products/v2/a", "/products/v2/a"),
        ("/products//v2/./a/", "/products/v2/a"),
        ("/some/dir", "/some/dir"),
        ("/a/b..c/...", "/a/b..c/..."),
    ],
)
def test_normalise_accepts_paths_under_the_root(given: str, expected: str):
    assert LocalStorage.normalise(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "",
        "/",
        "//",
        "..",
        "/../etc",
        "/products/../../etc",
        "products/v2/..",
        "/a/\x00b",
        "\x00",
        "/a\\..\\..\\b",
        None,
        42,
    ],
)
def test_normalise_refuses_escapes_and_forbidden_characters(given: Any):
    with pytest.raises(ValidationError) as err:
        LocalStorage.normalise(given)

    assert err.value.detail["path"] == "archive_path"


# -- resolve -------------------------------------------------------------------------------


def test_resolve_stays_under_the_root(storage: LocalStorage, root: Path):
    assert storage.resolve("/products/v2/a") == root.resolve() / "products" / "v2" / "a"
    assert storage.resolve("products/v2/a") == storage.resolve("/products/v2/a")


@pytest.mark.parametrize("relative_link", [False, True], ids=["absolute-link", "relative-link"])
def test_resolve_refuses_a_symlink_out_of_the_root(
    storage: LocalStorage, root: Path, outside: Path, relative_link: bool
):
    target = os.path.relpath(outside, root) if relative_link else str(outside)
    (root / "escape").symlink_to(target, target_is_directory=True)

    for archive_path in ("/escape", "/escape/deeper", "escape/secret.txt"):
        with pytest.raises(ValidationError) as err:
            storage.resolve(archive_path)
        assert err.value.detail["path"] == "archive_path"
        assert "outside the storage root" in err.value.message


def test_resolve_allows_a_symlink_that_stays_inside(storage: LocalStorage, root: Path):
    (root / "real").mkdir()
    (root / "alias").symlink_to(root / "real", target_is_directory=True)

    assert storage.resolve("/alias/x") == root.resolve() / "real" / "x"


def test_a_root_reached_through_a_symlink_works(tmp_path: Path, root: Path):
    linked = tmp_path / "linked-root"
    linked.symlink_to(root, target_is_directory=True)
    storage = LocalStorage(linked)

    storage.write("/products/a", "f.txt", b"x")

    assert (root / "products" / "a" / "f.txt").read_bytes() == b"x"
    assert listing(storage, "/products/a") == {"f.txt": 1}


def test_makedirs_creates_the_directory(storage: LocalStorage, root: Path):
    made = storage.makedirs("/products/v2/a/b")

    assert made.is_dir()
    assert made == root.resolve() / "products" / "v2" / "a" / "b"
    assert storage.makedirs("/products/v2/a/b") == made  # again: no error


# -- write ---------------------------------------------------------------------------------


def test_write_puts_files_under_the_archive_path(storage: LocalStorage, root: Path):
    written = storage.write("/products/a", "sub/dir/out.csv", b"1,2\n")

    assert written == root.resolve() / "products" / "a" / "sub" / "dir" / "out.csv"
    assert written.read_bytes() == b"1,2\n"


def test_write_takes_an_absolute_output_name_as_relative(storage: LocalStorage, root: Path):
    written = storage.write("/products/a", "/etc/passwd", b"not really")

    assert written == root.resolve() / "products" / "a" / "etc" / "passwd"


@pytest.mark.parametrize("relative", ["../x.txt", "sub/../../x.txt", "a/\x00", ""])
def test_write_refuses_outputs_that_escape_by_name(
    storage: LocalStorage, root: Path, relative: str
):
    with pytest.raises(ValidationError):
        storage.write("/products/a", relative, b"x")

    assert not (root / "products" / "x.txt").exists()
    assert [p for p in root.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("kind", ["directory", "file"])
def test_write_refuses_outputs_that_escape_through_a_symlink(
    storage: LocalStorage, root: Path, outside: Path, kind: str
):
    base = storage.makedirs("/products/a")
    if kind == "directory":
        (base / "link").symlink_to(outside, target_is_directory=True)
        relative = "link/planted.txt"
    else:
        (base / "link").symlink_to(outside / "secret.txt")
        relative = "link"

    with pytest.raises(ValidationError) as err:
        storage.write("/products/a", relative, b"overwritten")

    assert err.value.detail["path"] == "outputs"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"


def test_write_refuses_an_archive_path_that_escapes(storage: LocalStorage, root: Path, outside):
    (root / "escape").symlink_to(outside, target_is_directory=True)

    with pytest.raises(ValidationError) as err:
        storage.write("/escape", "planted.txt", b"x")

    assert err.value.detail["path"] == "archive_path"
    assert not (outside / "planted.txt").exists()


# -- walk ----------------------------------------------------------------------------------


def test_walk_lists_every_regular_file_with_relative_paths_and_sizes(storage: LocalStorage):
    for relative, content in {
        "a.txt": b"a",
        "sub/b.csv": b"bb",
        "sub/deeper/c.json": b"ccc",
    }.items():
        storage.write("/products/x", relative, content)
    storage.write("/products", "beside.txt", b"not under /products/x")
    storage.makedirs("/products/x/empty-dir")

    entries = list(storage.walk("/products/x"))

    assert all(isinstance(e, FileEntry) for e in entries)
    assert {e.relative: e.size for e in entries} == {
        "a.txt": 1,
        "sub/b.csv": 2,
        "sub/deeper/c.json": 3,
    }
    assert all(e.mtime > 0 for e in entries)


def test_walk_of_a_missing_or_file_path_is_empty(storage: LocalStorage):
    assert listing(storage, "/nothing/here") == {}
    storage.write("/products", "file.txt", b"x")
    assert listing(storage, "/products/file.txt") == {}


def test_walk_does_not_follow_symlinks(storage: LocalStorage, root: Path, outside: Path):
    base = storage.makedirs("/products/x")
    (base / "kept.txt").write_text("kept")
    (base / "dir-out").symlink_to(outside, target_is_directory=True)
    (base / "file-out").symlink_to(outside / "secret.txt")
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "inside.txt").write_text("inside")
    (base / "dir-in").symlink_to(root / "elsewhere", target_is_directory=True)
    (base / "dangling").symlink_to(root / "missing")

    assert listing(storage, "/products/x") == {"kept.txt": 4}


def test_walk_refuses_an_archive_path_that_escapes(storage: LocalStorage, root, outside):
    (root / "escape").symlink_to(outside, target_is_directory=True)

    with pytest.raises(ValidationError):
        list(storage.walk("/escape"))


def test_walk_streams_one_directory_at_a_time(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
):
    for name in "abcdefgh":
        storage.write("/products/x", f"{name}/f.txt", b"x")
    scanned: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path: Any) -> Any:
        scanned.append(str(path))
        return real_scandir(path)

    monkeypatch.setattr(storage_module.os, "scandir", counting_scandir)

    entries: Iterator[FileEntry] = storage.walk("/products/x")
    assert scanned == []  # nothing is read before the first file is asked for
    first = next(entries)

    assert first.relative.endswith("/f.txt")
    assert len(scanned) == 2  # the archive path and one sub-directory, not all nine
    assert len(list(entries)) == 7
    assert len(scanned) == 9
